"""Benchmarks: ratios against dcmtk, dicognito or plain pydicom, run side by side."""
