"""Speaker diarization that names enrolled voices: who spoke when, and who they are.

Stages, one module each (arrays in samples at 16 kHz unless said otherwise):

* :mod:`.source`     audio in blocks (files streamed, so memory stays bounded)
* :mod:`.speech`     speech activity detection -> regions (R, 2)
* :mod:`.windows`    regions -> overlapping windows (W, 2), 1.5 s every 0.75 s
* :mod:`.embed`      windows -> embeddings (W, D), batched, through the public embedder API
* :mod:`.clustering` embeddings -> labels (W,), speaker count estimated or given
* :mod:`.refine`     window labels -> frame labels (10 ms) -> turns
* :mod:`.overlap`    a second speaker where two turns meet (off by default: see there)
* :mod:`.naming`     clusters -> enrolled names (calibrated decision) or unknown-N
* :mod:`.pipeline`   :class:`Diarizer` running all of them -> :class:`Diarization`
* :mod:`.segments`   :class:`Segment`, RTTM write/read, JSON
* :mod:`.simulate`   conversations with known truth from a labelled corpus (+ rooms)
* :mod:`.evaluate`   DER / JER (pyannote.metrics), speaker count and naming accuracy
"""

from voiceprint.diarization.pipeline import Diarization, Diarizer
from voiceprint.diarization.segments import Segment, read_rttm, write_rttm

__all__ = ["Diarization", "Diarizer", "Segment", "read_rttm", "write_rttm"]
