"""DICOMweb per node: QIDO-RS, WADO-RS and STOW-RS on every node the caller may use.

Each node answers under ``/dicom-web/<node>/`` twice: with ADIT's service segments
(``qidors/``, ``wadors/``, ``stowrs/``) and in the standard root layout, so that an
unchanged ``dicomweb_client.DICOMwebClient(url=".../dicom-web/<node>")`` works with its
default prefixes. Whatever the node speaks (C-FIND/QIDO, C-GET/C-MOVE/WADO, C-STORE/STOW,
a folder) the caller speaks DICOMweb.

Checks, in this order, for every request: the caller is authenticated (401); the node is
one they may see, else 404 exactly as for a node that does not exist; query and retrieve
need the node's source role, store its destination role (403); a retrieve without
``pseudonym`` (or trial parameters) needs ``transfer_unpseudonymized`` (403). Queries and
stores run through the caller's guarded node (its checks and audit rows); a retrieve
checks the same :class:`~adit_workbench.access.Access` and streams undecoded bytes from a
node of its own. Every request also leaves one ``dicomweb.*`` audit row: user, node,
level, the UIDs as keyed hashes (never in clear), count, bytes and outcome. Admins read
those rows summed per user and node at ``GET /api/admin/usage``
(:mod:`adit_workbench.store.usage`).

Instances are sent as stored, never transcoded: a WADO-RS Accept that names only other
transfer syntaxes is answered 406 (naming the stored one) before any part; ``*``, no
``transfer-syntax`` or the stored one are served. A STOW-RS body larger than
``ADIT_WB_MAX_STOW_MB`` is refused with 413 as it streams in, before anything is stored.

Pseudonymization uses the project's key and the job profile
(:func:`~adit_workbench.jobs.execute.build_pseudonymizer`), so a pseudonymized WADO
answer has the UIDs a transfer job of the same study and pseudonym writes. A QIDO answer
to a caller who may not see unpseudonymized data (or who sends ``pseudonym``) goes through
the same pseudonymizer; its Study/Series/SOP Instance UIDs are left as they are, because
they are what the caller retrieves by (the retrieved files carry keyed UIDs).
"""

from __future__ import annotations

from fastapi import APIRouter

from .dicomweb_qido import search_instances, search_series, search_studies
from .dicomweb_stow import store
from .dicomweb_wado import retrieve, retrieve_metadata

__all__ = ["router"]

router = APIRouter(prefix="/dicom-web/{node}", tags=["dicomweb"])

# -- routes: ADIT's service segments and the standard root layout ---------------------
_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{sop}"

for _segment in ("/qidors", ""):
    router.add_api_route(_segment + "/studies", search_studies, methods=["GET"])
    router.add_api_route(_segment + "/series", search_series, methods=["GET"])
    router.add_api_route(_segment + "/instances", search_instances, methods=["GET"])
    router.add_api_route(_segment + _STUDY + "/series", search_series, methods=["GET"])
    router.add_api_route(_segment + _STUDY + "/instances", search_instances, methods=["GET"])
    router.add_api_route(_segment + _SERIES + "/instances", search_instances, methods=["GET"])
for _segment in ("/wadors", ""):
    for _resource in (_STUDY, _SERIES, _INSTANCE):
        router.add_api_route(_segment + _resource, retrieve, methods=["GET"])
        router.add_api_route(_segment + _resource + "/metadata", retrieve_metadata,
                             methods=["GET"])  # fmt: skip
for _segment in ("/stowrs", ""):
    router.add_api_route(_segment + "/studies", store, methods=["POST"])
    router.add_api_route(_segment + _STUDY, store, methods=["POST"])
