"""DICOM layer: nodes (DIMSE, DICOMweb, folder), queries, retrieve/store streams."""
