"""The numpy audio level gives aiortc's RFC 6465 result, value for value (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest
from av import AudioFrame

from server.calls.manager import audio_level_dbov


def reference_dbov(frame: AudioFrame) -> int:
    """aiortc's own formula (aiortc.rtp, RFC 6465 Appendix A), sample by sample."""
    import math
    import struct

    rms = 0.0
    for (sample,) in struct.Struct("h").iter_unpack(bytes(frame.planes[0])):
        rms += sample * sample
    rms = math.sqrt(rms / (frame.samples * 32767 * 32767))
    return round(min(max(20 * math.log10(rms), -127), 0)) if rms > 0 else -127


def frame_of(pcm: np.ndarray, layout: str) -> AudioFrame:
    return AudioFrame.from_ndarray(pcm.astype(np.int16).reshape(1, -1), format="s16", layout=layout)


@pytest.mark.parametrize("amplitude", [0, 1, 30, 1000, 8000, 32767])
@pytest.mark.parametrize("layout", ["mono", "stereo"])
def test_same_level_as_aiortc(amplitude: int, layout: str) -> None:
    n = 960 * (2 if layout == "stereo" else 1)
    pcm = amplitude * np.sin(np.linspace(0, 40 * np.pi, n))
    frame = frame_of(pcm, layout)
    assert audio_level_dbov(frame) == reference_dbov(frame)


def test_full_scale_square_wave_is_zero_dbov_and_silence_the_floor() -> None:
    square = np.where(np.arange(960) % 2, 32767, -32767)
    assert audio_level_dbov(frame_of(square, "mono")) == 0
    assert audio_level_dbov(frame_of(np.zeros(960), "mono")) == -127
