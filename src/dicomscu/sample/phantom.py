"""Synthetic image pixels: a body-like phantom, fast in pure Python, different per slice.

Sample images should look like images (so compressors behave as on real data and a
viewer shows something sensible) yet cost next to nothing: 200 CT slices of 512x512
must be written in a few seconds without numpy.  Each row is therefore spliced from
precomputed runs (air, tissue with a little noise, a brighter "organ") with C-speed
`array` slicing; only the run boundaries are computed per row.  The organ's radius
follows the slice position, so consecutive slices differ as in a real series.
"""

from __future__ import annotations

import math
import random
import sys
from array import array

NOISE_AMPLITUDE = 32  # stored-value units: a little texture, realistic for compression


class Phantom:
    """Pixel data of one series: ``rows`` x ``cols`` unsigned 16-bit, values below 2**bits."""

    def __init__(self, rows: int, cols: int, tissue: int, organ: int, bits: int = 12, seed: int = 0) -> None:
        self.rows, self.cols = rows, cols
        ceiling = (1 << bits) - NOISE_AMPLITUDE
        rng = random.Random(seed)
        noise = rng.randbytes(cols * 4 + 97)
        self._air = array("H", bytes(2 * cols))
        self._tissue = array("H", (min(tissue, ceiling) + b % NOISE_AMPLITUDE for b in noise))
        self._organ = array("H", (min(organ, ceiling) + b % NOISE_AMPLITUDE for b in reversed(noise)))

    def slice(self, index: int, count: int) -> bytes:
        """The little-endian bytes of slice `index` of `count` (0-based)."""
        rows, cols = self.rows, self.cols
        centre_y, centre_x = rows / 2, cols / 2
        body_ry, body_rx = rows * 0.42, cols * 0.46
        # the organ grows then shrinks across the series, as an organ does across slices
        phase = math.sin(math.pi * (index + 0.5) / max(count, 1))
        organ_r = max(1.0, min(rows, cols) * (0.05 + 0.15 * phase))
        organ_y, organ_x = centre_y - rows * 0.08, centre_x + cols * 0.12
        out = array("H")
        period = len(self._tissue) - cols
        for y in range(rows):
            offset = (y * 131 + index * 17) % period
            row = self._tissue[offset:offset + cols]
            dy = (y + 0.5 - centre_y) / body_ry
            if abs(dy) >= 1:
                out.extend(self._air[:cols])
                continue
            half = int(body_rx * math.sqrt(1 - dy * dy))
            left, right = max(0, int(centre_x) - half), min(cols, int(centre_x) + half)
            oy = y + 0.5 - organ_y
            if abs(oy) < organ_r:
                ohalf = int(math.sqrt(organ_r * organ_r - oy * oy))
                o_left, o_right = max(left, int(organ_x) - ohalf), min(right, int(organ_x) + ohalf)
                if o_left < o_right:
                    row[o_left:o_right] = self._organ[offset:offset + o_right - o_left]
            row[:left] = self._air[:left]
            row[right:] = self._air[:cols - right]
            out.extend(row)
        if sys.byteorder != "little":
            out.byteswap()
        return out.tobytes()
