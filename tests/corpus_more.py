"""A second corpus of real-world objects, built from public PyPI packages (tests/test_corpus.py sends it):

* deid-data's files (CT, ultrasound cine of 43 MB, a 16 MB cat, cookies; one with elements in the
  private groups PS3.5 forbids);
* whole-slide microscopy (VL Whole Slide Microscopy Image, 4 frames each) in every transfer syntax
  wsidicom-data has encoded frames for: native little and big endian, JPEG baseline, extended and
  lossless, JPEG-LS lossless and near-lossless, JPEG 2000 and its lossless form, RLE, in grey,
  RGB and YBR, 8 to 16 bits;
* highdicom objects made from pydicom's CT_small: a binary Segmentation, a Comprehensive 3D SR, a
  Parametric Map (32-bit float pixels) and a Legacy Converted Enhanced CT, with the CT series they
  reference.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

#: wsidicom-data's file names -> transfer syntax.
SYNTAX = {"Implicit_VR_Little_Endian": "1.2.840.10008.1.2", "Explicit_VR_Little_Endian": "1.2.840.10008.1.2.1",
          "Explicit_VR_Big_Endian": "1.2.840.10008.1.2.2", "JPEG_Baseline_(Process_1)": "1.2.840.10008.1.2.4.50",
          "JPEG_Extended_(Process_2_and_4)": "1.2.840.10008.1.2.4.51",
          "JPEG_Lossless,_Non-Hierarchical_(Process_14)": "1.2.840.10008.1.2.4.57",
          "JPEG-LS_Lossless_Image_Compression": "1.2.840.10008.1.2.4.80",
          "JPEG-LS_Lossy_(Near-Lossless)_Image_Compression": "1.2.840.10008.1.2.4.81",
          "JPEG_2000_Image_Compression_(Lossless_Only)": "1.2.840.10008.1.2.4.90",
          "JPEG_2000_Image_Compression": "1.2.840.10008.1.2.4.91", "RLE_Lossless": "1.2.840.10008.1.2.5"}
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
FRAMES = 4


def build(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    _whole_slides(folder)
    _deid(folder)
    _highdicom(folder)
    return sorted(folder.iterdir())


def _photometric(name: str, colour: str) -> str | None:
    if colour == "GRAYSCALE":
        return "MONOCHROME2"
    if colour == "RGB":
        return "RGB"
    if "2000" in name:
        return "YBR_RCT" if "Lossless" in name else "YBR_ICT"
    if "Baseline" in name or "Extended" in name:
        return "YBR_FULL_422"
    return None  # (wsidicom-data's lossless "YBR" frames are its RGB ones: not a YBR object)


def _whole_slides(folder: Path) -> None:
    import wsidicom_data
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    study = generate_uid()
    for path in sorted((Path(wsidicom_data.__file__).parent / "data" / "encoded").iterdir()):
        name, colour, bits_text = path.stem.rsplit("-", 2)
        photometric = _photometric(name, colour)
        if photometric is None:
            continue
        syntax, bits = SYNTAX[name], int(bits_text)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.SOPClassUID, ds.SOPInstanceUID = WSI, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.PatientID, ds.PatientName, ds.Modality = "WSI-1", "Slide^Test", "SM"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        ds.Rows = ds.Columns = 240
        ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = 480
        ds.NumberOfFrames = FRAMES
        ds.SamplesPerPixel = 1 if colour == "GRAYSCALE" else 3
        if ds.SamplesPerPixel == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (16 if bits > 8 else 8), bits, bits - 1, 0
        frame = path.read_bytes()
        if path.suffix == ".raw":
            ds.PixelData = frame * FRAMES
        else:
            ds.PixelData = encapsulate([frame] * FRAMES)
            ds["PixelData"].VR = "OB"
        ds.save_as(folder / f"wsi-{path.stem}.dcm", enforce_file_format=True,
                   little_endian=syntax != "1.2.840.10008.1.2.2", implicit_vr=syntax == "1.2.840.10008.1.2")


def _deid(folder: Path) -> None:
    import deid_data

    for path in sorted(Path(deid_data.__file__).parent.rglob("*.dcm")):
        shutil.copy(path, folder / f"deid-{path.parent.name}-{path.name}")


def _highdicom(folder: Path) -> None:
    import warnings

    import highdicom as hd
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series, uid = [], generate_uid()
    for number in range(3):
        ds = copy.deepcopy(ct)
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), uid
        ds.ImagePositionPatient, ds.InstanceNumber = [0.0, 0.0, float(number)], number + 1
        ds.save_as(folder / f"hd-ct-{number}.dcm")
        series.append(ds)
    device = {"manufacturer": "dicomscu", "manufacturer_model_name": "tests", "software_versions": "1",
              "device_serial_number": "1"}
    mask = np.zeros((3, ct.Rows, ct.Columns), dtype=bool)
    mask[1, 10:30, 10:30] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="box", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Bone, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    hd.seg.Segmentation(
        source_images=series, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1, **device).save_as(folder / "hd-seg.dcm")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Doe^J"))
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT, graphic_data=np.array([[10.0, 10.0]]),
                               source_image=hd.sr.SourceImageForRegion.from_source_image(series[0]))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="lesion 1"),
        referenced_region=region, finding_type=codes.SCT.Lesion)
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_person_context=observer),
                                     procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=[group])
    hd.sr.Comprehensive3DSR(evidence=series, content=report, series_number=3, series_instance_uid=generate_uid(),
                            sop_instance_uid=generate_uid(), instance_number=1, manufacturer="dicomscu"
                            ).save_as(folder / "hd-sr.dcm")
    hd.legacy.LegacyConvertedEnhancedCTImage(legacy_datasets=series, series_instance_uid=generate_uid(), series_number=4,
                                             sop_instance_uid=generate_uid(), instance_number=1
                                             ).save_as(folder / "hd-legacy-ct.dcm")
    values = np.random.default_rng(0).random((3, ct.Rows, ct.Columns)).astype(np.float32)
    mapping = hd.pm.RealWorldValueMapping(lut_label="val", lut_explanation="values", unit=codes.UCUM.NoUnits,
                                          value_range=(0.0, 1.0), intercept=0, slope=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (window arguments, deprecated in favour of a VOI LUT)
        hd.pm.ParametricMap(source_images=series, pixel_array=values, series_instance_uid=generate_uid(),
                            series_number=5, sop_instance_uid=generate_uid(), instance_number=1,
                            contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
                            window_center=0.5, window_width=1.0, **device).save_as(folder / "hd-pmap.dcm")
