"""octavo: an offline LLM inference engine with a C++ core and vLLM's LLM API.

    from octavo import LLM, SamplingParams
    llm = LLM(model="path/to/hf/model")
    outputs = llm.generate(["Hello, my name is"], SamplingParams(temperature=0.8, top_p=0.95))
"""

from typing import Any

from octavo.outputs import CompletionOutput, Logprob, RequestOutput
from octavo.sampling_params import BeamSearchParams, SamplingParams

__all__ = ["LLM", "SamplingParams", "BeamSearchParams", "RequestOutput", "CompletionOutput", "Logprob"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # LLM needs the native extension; the pure-Python types above do not.
    if name == "LLM":
        from octavo.llm import LLM

        return LLM
    raise AttributeError(f"module 'octavo' has no attribute {name!r}")
