"""The service's DICOM JSON of query answers, and the client's reading of it, are
pydicom's: the shortcuts for text elements change no byte and no value."""

from __future__ import annotations

import json

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from adit_workbench.remote.node import dataset_from_json
from adit_workbench.web.nodes import identifier_json


def _study() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "SYN0001"
    ds.PatientName = "Doe^John"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = ""
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.StudyDate = "20200101"
    ds.StudyTime = "101010.5"
    ds.AccessionNumber = ""
    ds.StudyDescription = "CT chest \\ abdomen"[:9]
    ds.ModalitiesInStudy = ["CT", "SR"]
    ds.NumberOfStudyRelatedSeries = 3
    ds.NumberOfStudyRelatedInstances = None
    ds.RetrieveAETitle = "SANDBOX"
    return ds


def _odd() -> Dataset:
    """Elements that take pydicom's own path: names, numbers, sequences, binary, empty."""
    ds = Dataset()
    ds.PatientName = ["Doe^John", "Roe^Jane"]
    ds.OtherPatientIDs = ["A", ""]  # a multi-value with an empty value
    ds.ModalitiesInStudy = ["CT"]
    ds.SeriesNumber = "12"
    ds.SliceThickness = "2.5"
    ds.Rows = 512
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.add_new(0x00091010, "OB", b"\x00\x01")
    ds.add_new(0x00091011, "LO", None)
    item = Dataset()
    item.CodeValue = "123"
    item.CodingSchemeDesignator = "DCM"
    ds.ProcedureCodeSequence = Sequence([item])
    ds.ReferencedSOPClassUID = ""
    return ds


@pytest.mark.parametrize("make", [_study, _odd, Dataset])
def test_encoding_is_pydicoms_byte_for_byte(make: type[Dataset]) -> None:
    ds = make()
    assert json.dumps(identifier_json(ds)) == json.dumps(ds.to_json_dict())


@pytest.mark.parametrize("make", [_study, _odd, Dataset])
def test_decoding_gives_pydicoms_dataset(make: type[Dataset]) -> None:
    data = make().to_json_dict()
    fast, slow = dataset_from_json(data), Dataset.from_json(data)
    assert fast == slow
    for element in slow:
        assert type(fast[element.tag].value) is type(element.value), element
        assert fast[element.tag].VR == element.VR
    assert fast.to_json_dict() == slow.to_json_dict()


def test_a_malformed_element_is_refused_as_pydicom_refuses_it() -> None:
    data = {"00100020": {"vr": "LO", "Value": "not a list"}}
    with pytest.raises((TypeError, ValueError)):
        Dataset.from_json(data)
    with pytest.raises((TypeError, ValueError)):
        dataset_from_json(data)
