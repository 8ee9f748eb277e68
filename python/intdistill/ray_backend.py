"""Ray for the embarrassingly parallel work (the optional extra ``intdistill[distributed]``).

``--ray [ADDRESS]`` (``auto``: the running cluster ``ray start --head`` made; ``local``, or the flag alone: a
Ray instance on this machine; ``ray://host:10001``: a remote cluster) on ``candidates``, ``index`` and
``train-retriever`` encodes the corpus on Ray workers, and on ``label`` / ``rag`` / ``generate-queries`` sends
the LLM calls from Ray actors, one per endpoint (``--llm-base-url`` given several times).

- Encoding (:func:`encoder`): the retriever's files go into Ray's object store once (so workers on other
  machines need no shared disk); each worker loads the retriever once and encodes contiguous chunks of the
  corpus; the chunks come back in corpus order. Embeddings equal one process's up to float rounding (a chunk
  is batched by length on its own, so padding widths, and the last bits, can differ).
- LLM calls (:class:`RayEndpoints`): the driver keeps the one SQLite cache, the ledger, the journals, the
  budgets and Ctrl-C handling (:class:`intdistill.llm.fanout.FanOutClient`); an actor only sends a request
  and returns the answer (or the error) with its retry counts.

Nothing imports Ray unless ``--ray`` is given.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

#: Texts per task: small enough to balance the workers, large enough that a task outlasts its overhead.
CHUNK = 2048


def _ray():
    try:
        import ray
    except ImportError:
        from intdistill.data import DataError

        raise DataError(None, None, "--ray needs the optional package ray: pip install 'intdistill[distributed]'") from None
    return ray


def init(address: str | None) -> None:
    """Connect to (or start) Ray once per process. ``None``/``"local"``: a Ray instance on this machine."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs = {"address": None if address in (None, "", "local") else address, "log_to_driver": False}
        if kwargs["address"] is None:
            kwargs["num_cpus"] = os.cpu_count() or 1
        ray.init(**kwargs)


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def _unpack(files: dict[str, bytes]) -> str:
    root = tempfile.mkdtemp(prefix="intdistill-ray-")
    for rel, data in files.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _encoder_actor():
    ray = _ray()

    @ray.remote(num_cpus=1)
    class Encoder:
        def __init__(self, files, device: str):
            import torch

            from intdistill.models import Retriever

            torch.set_num_threads(1)
            self.retriever = Retriever.load(_unpack(files), device=device)

        def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
            return self.retriever.encode_passages(texts, batch_size=batch_size)

    return Encoder


def encoder(retriever, address: str | None, *, workers: int | None = None, batch_size: int = 64,
            device: str = "cpu") -> Callable[[list[str]], np.ndarray]:
    """``encode(texts) -> embeddings`` on Ray workers, for :func:`intdistill.candidates.encode_corpus`'s
    ``encode``. ``workers``: actors to start (default: the cluster's CPUs, at most one per chunk)."""
    ray = _ray()
    init(address)
    with tempfile.TemporaryDirectory() as tmp:
        retriever.save(tmp)
        files = ray.put(_files(Path(tmp)))

    def encode(texts: list[str]) -> np.ndarray:
        chunks = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
        if not chunks:
            return np.empty((0, retriever.dim), dtype=np.float32)
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = [_encoder_actor().remote(files, device) for _ in range(min(n, len(chunks)))]
        try:
            futures = [actors[i % len(actors)].encode.remote(c, batch_size) for i, c in enumerate(chunks)]
            return np.concatenate(ray.get(futures), axis=0)  # ray.get keeps the order of the futures
        finally:
            for a in actors:
                ray.kill(a)

    return encode


class RayEndpoints:
    """One Ray actor per OpenAI-compatible endpoint; each holds an ``LLMClient`` without a cache or budget and
    answers :meth:`send` with ``(ChatResult, retries, malformed)``, raising the client's ``LLMError`` (with its
    counts) on failure. ``concurrency``: requests one actor sends at once (a threaded actor)."""

    def __init__(self, address: str | None, base_urls: list[str], model: str, *, concurrency: int = 4,
                 **client_kwargs):
        ray = _ray()
        init(address)

        # The API key is not shipped: an actor reads it from its own environment (a local Ray instance's workers
        # inherit this process's; on a cluster, set it where `ray start` runs), so it is never serialised.
        @ray.remote(num_cpus=0, max_concurrency=concurrency)
        class Endpoint:
            def __init__(self, base_url, model, kwargs):
                from intdistill.llm.client import LLMClient

                self.client = LLMClient(base_url, model, **kwargs)

            def send(self, request):
                return self.client.send(request)

        self.base_urls = list(base_urls)
        self.actors = [Endpoint.remote(u, model, client_kwargs) for u in self.base_urls]

    def sender(self, i: int):
        ray = _ray()
        actor = self.actors[i]
        return lambda request: ray.get(actor.send.remote(request))

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)
