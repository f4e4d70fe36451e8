"""WADO-RS for viewers (PS3.18 10.4): metadata and frames, from serve's stored files.

A viewer (OHIF, say) loads a series from ``/series/{uid}/metadata`` and its pixels from
``/instances/{uid}/frames/{list}``:

* **metadata**: each instance as DICOM JSON (PS3.18 F.2), its values inline, but the pixel data
  and any other top-level value past :data:`INLINE_BYTES` given as a ``BulkDataURI`` instead
  (read with pydicom's deferred reading: those values are never read to answer);
* **frames**: the frames asked for (1-based), each one part of a ``multipart/related`` answer:
  native pixel data as ``application/octet-stream`` in little endian (a big endian file's
  16- and 32-bit samples swapped), compressed frames as stored when the client accepts that
  syntax (``transfer-syntax=*`` or the syntax itself, the part labelled with it), else decoded
  to native pixels when a decoder is installed; a frame that cannot be given as asked is a 406.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from dicomscu import uids

#: Top-level values longer than this are not inlined in metadata: a BulkDataURI names them.
INLINE_BYTES = 64 * 1024
PIXEL_DATA = 0x7FE00010


class ViewerError(Exception):
    """What the request cannot have, with the HTTP status that says so."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def instance_metadata(path: str, instance_url: str) -> dict:
    """The DICOM JSON of the stored file at `path` (its data set, not its file meta), large values as
    BulkDataURIs below `instance_url`."""
    from pydicom import dcmread
    from pydicom.dataelem import RawDataElement

    ds = dcmread(path, defer_size=INLINE_BYTES)
    if 0xFFFCFFFC in ds:  # Data Set Trailing Padding: no data
        del ds[0xFFFCFFFC]
    bulk = {}
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        deferred = isinstance(raw, RawDataElement) and raw.value is None
        if tag == PIXEL_DATA or deferred:
            bulk[int(tag)] = (raw.VR or "OB") if isinstance(raw, RawDataElement) else ds[tag].VR
            del ds[tag]
    document = ds.to_json_dict(bulk_data_threshold=INLINE_BYTES,
                               bulk_data_element_handler=lambda element: f"{instance_url}/bulkdata/{element.tag:08X}")
    for number, vr in bulk.items():
        where = f"{instance_url}/frames/1" if number == PIXEL_DATA else f"{instance_url}/bulkdata/{number:08X}"
        document[f"{number:08X}"] = {"vr": vr if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") else "OB",
                                  "BulkDataURI": where}
    return document


def metadata_json(documents: list[dict]) -> bytes:
    return json.dumps(documents).encode()


@dataclass(frozen=True)
class Frame:
    data: bytes
    content_type: str


def frames(data: bytes, dataset_offset: int, syntax: str, numbers: Sequence[int],
           accepted: list[str] | None) -> list[Frame]:
    """Frames `numbers` (1-based) of a stored file (`data`, its data set at `dataset_offset`), as asked:
    `accepted` the transfer syntaxes the client takes for frames (None: any, ``transfer-syntax=*``)."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    ds = dcmread(DicomBytesIO(bytes(data)), force=True)
    if "PixelData" not in ds:
        raise ViewerError(404, "this instance has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    wrong = [n for n in numbers if not 1 <= n <= count]
    if wrong:
        raise ViewerError(404, f"no frame {wrong[0]}: the instance has {count}")
    if syntax in uids.CONVERTIBLE_SYNTAXES:
        return [Frame(frame, "application/octet-stream; transfer-syntax=" + uids.EXPLICIT_VR_LE)
                for frame in _native_frames(ds, syntax, numbers)]
    if accepted is None or syntax in accepted:
        from pydicom.encaps import generate_frames

        every = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [Frame(bytes(every[n - 1]), f"application/octet-stream; transfer-syntax={syntax}") for n in numbers]
    try:  # decoded to native pixels, as the client asked for none of the compressed syntax
        array = ds.pixel_array
    except Exception as exc:
        raise ViewerError(406, f"the frames are stored in {syntax}, which the request does not accept, and "
                               f"they cannot be decoded here ({type(exc).__name__}): ask for transfer-syntax=*")
    if count == 1:
        array = array[None, ...]
    return [Frame(_little_endian(array[n - 1]), "application/octet-stream; transfer-syntax=" + uids.EXPLICIT_VR_LE)
            for n in numbers]


def _little_endian(frame) -> bytes:
    import numpy

    return numpy.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def _native_frames(ds, syntax: str, numbers: Sequence[int]) -> list[bytes]:
    """Native frames as stored, little endian (1-bit frames need not start on a byte: PS3.5 8.1.1)."""
    import numpy

    bits = int(ds.BitsAllocated)
    samples = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    pixels = numpy.frombuffer(bytes(ds.PixelData), dtype=numpy.uint8)
    every_bit = numpy.unpackbits(pixels, bitorder="little") if bits == 1 else None  # (once for all frames)
    frames = []
    for number in numbers:
        if every_bit is not None:
            frame_bits = every_bit[(number - 1) * samples:number * samples]
            frames.append(numpy.packbits(frame_bits, bitorder="little").tobytes())
            continue
        length = samples * bits // 8
        frame = pixels[(number - 1) * length:number * length].tobytes()
        if syntax == uids.EXPLICIT_VR_BE and bits in (16, 32):
            frame = numpy.frombuffer(frame, dtype=f">u{bits // 8}").astype(f"<u{bits // 8}").tobytes()
        frames.append(frame)
    return frames


#: The longest side of a thumbnail, in pixels.
THUMBNAIL = 128
_RENDERED = {"image/jpeg": "JPEG", "image/png": "PNG"}


def rendered_type(accept: str | None) -> str:
    """The image type a /rendered or /thumbnail request takes (JPEG without a preference); a 406 for none
    of those this server makes."""
    if not (accept or "").strip():
        return "image/jpeg"
    for media_range in accept.split(","):  # type: ignore[union-attr]
        kind = media_range.split(";")[0].strip().lower()
        if kind in _RENDERED:
            return kind
        if kind in ("*/*", "image/*"):
            return "image/jpeg"
    raise ViewerError(406, "rendered images are image/jpeg or image/png")


def render(data: bytes, frame: int, media_type: str, window: str | None = None, thumbnail: bool = False) -> bytes:
    """Frame `frame` (1-based) of a stored file as a picture (PS3.18 8.3.5): the Modality LUT (rescale),
    then the VOI window given (``window=center,width``), else the data set's first, else the frame's range;
    MONOCHROME1 inverted, colour as RGB; a thumbnail at most :data:`THUMBNAIL` pixels a side."""
    import io

    import numpy
    from PIL import Image
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    ds = dcmread(DicomBytesIO(bytes(data)), force=True)
    if "PixelData" not in ds:
        raise ViewerError(404, "this instance has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= count:
        raise ViewerError(404, f"no frame {frame}: the instance has {count}")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ViewerError(406, f"the pixels cannot be decoded here ({type(exc).__name__}: {exc})")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if count > 1:
        pixels = pixels[frame - 1]
    if samples == 3:
        photometric = str(ds.get("PhotometricInterpretation", "RGB"))
        if photometric.startswith("YBR") and not ds.file_meta.TransferSyntaxUID.is_compressed:
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        picture = Image.fromarray(numpy.clip(pixels, 0, 255).astype(numpy.uint8), "RGB")
    else:
        values = pixels.astype(numpy.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0)
        center, width = _window(ds, values, window)
        low = center - width / 2
        scaled = numpy.clip((values - low) / max(width, 1e-9) * 255.0, 0, 255)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            scaled = 255 - scaled
        picture = Image.fromarray(scaled.astype(numpy.uint8), "L")
    if thumbnail:
        picture.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    picture.save(out, _RENDERED[media_type])
    return out.getvalue()


def _window(ds, values, window: str | None) -> tuple[float, float]:
    if window:
        try:
            center, width = (float(part) for part in window.split(",")[:2])
        except ValueError:
            raise ViewerError(400, f"window={window!r}: give center,width (and an optional function)") from None
        return center, width
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is not None and widths is not None:
        first = lambda value: float(value[0] if isinstance(value, (list, tuple)) or  # noqa: E731
                                    type(value).__name__ == "MultiValue" else value)
        return first(centers), first(widths)
    low, high = float(values.min()), float(values.max())
    return (low + high) / 2, max(high - low, 1.0)


_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8, "US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8,
          "UV": 8, "SV": 8, "AT": 2}


def bulkdata(path: str, tag: int, syntax: str) -> bytes:
    """The value of top-level `tag` of the stored file at `path`, as a BulkDataURI of its metadata names it:
    its bytes in little endian (a big endian file's multi-byte values swapped)."""
    from pydicom import dcmread

    ds = dcmread(path, stop_before_pixels=tag != PIXEL_DATA)
    if tag not in ds or tag == PIXEL_DATA:
        raise ViewerError(404, f"no bulk data ({tag >> 16:04X},{tag & 0xFFFF:04X}) here"
                               + (": the pixel data is at .../frames" if tag == PIXEL_DATA else ""))
    element = ds[tag]
    value = element.value
    if not isinstance(value, (bytes, bytearray)):
        raise ViewerError(404, f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not bulk data")
    width = _WIDTH.get(element.VR, 1)
    if syntax == uids.EXPLICIT_VR_BE and width > 1:
        return b"".join(value[i:i + width][::-1] for i in range(0, len(value) - len(value) % width, width))
    return bytes(value)
