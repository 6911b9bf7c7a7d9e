"""DICOM in Vigil: reading, decoding, windowing, harmonizing and the ingest gate.

pydicom is imported only inside this package.
"""
