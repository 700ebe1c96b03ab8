"""ftapp's grouped CPU LoRA ops give what vLLM's own torch ops give, for one adapter and for a
batch mixing adapters and slot -1, decode (bgmv) and prefill (sgmv), and the plugin swaps them
in only where asked. Slot -1 means "no adapter": vLLM's ops index it as the last slot, so they
are compared with an extra, empty slot at the end; with every slot taken, a base-model
request gets nothing from the adapters (checked on a real vLLM server)."""

import pytest

from ftapp.serving import vllm_cpu_lora as grouped

torch = pytest.importorskip("torch")
lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

SLOTS, RANK, HIDDEN, OUT = 4, 16, 64, 96


def with_empty_slot(weights):
    """vLLM's reference with slot -1 meaning no adapter: an empty last slot for it to pick."""
    return torch.cat([weights, torch.zeros_like(weights[:1])])


def make(indices: list[int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tokens = len(indices)
    return {
        "x": torch.randn(tokens, HIDDEN, generator=generator),
        "a": torch.randn(SLOTS, 1, RANK, HIDDEN, generator=generator),  # shrink weights
        "b": torch.randn(SLOTS, 1, OUT, RANK, generator=generator),  # expand weights
        "h": torch.randn(tokens, RANK, generator=generator),
        "y": torch.randn(tokens, OUT + 8, generator=generator),
        "i": torch.tensor(indices),
    }


@pytest.mark.parametrize("indices", [[2] * 7, [0, 1, 1, 3, 0, 2], [-1, 0, -1, 3], [1], [-1] * 3])
def test_grouped_ops_match_vllm_torch_ops(indices):
    t = make(indices)
    # shrink: x (tokens, hidden) -> (tokens, rank), scaled
    ours, theirs = torch.zeros(len(indices), RANK), torch.zeros(len(indices), RANK)
    grouped.bgmv_shrink(t["x"], t["a"], ours, t["i"], 0.5)
    lora_ops.bgmv_shrink(t["x"], with_empty_slot(t["a"]), theirs, t["i"], 0.5)
    torch.testing.assert_close(ours, theirs)
    for add in (True, False):
        ours, theirs = t["y"].clone(), t["y"].clone()
        grouped.bgmv_expand(t["h"], t["b"], ours, t["i"], add_inputs=add)
        lora_ops.bgmv_expand(t["h"], with_empty_slot(t["b"]), theirs, t["i"], add_inputs=add)
        torch.testing.assert_close(ours, theirs)
        ours, theirs = t["y"].clone(), t["y"].clone()
        grouped.bgmv_expand_slice(t["h"], t["b"], ours, t["i"], 4, OUT, add_inputs=add)
        lora_ops.bgmv_expand_slice(
            t["h"], with_empty_slot(t["b"]), theirs, t["i"], 4, OUT, add_inputs=add
        )
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("slots", [[3, 3], [1, 2], [-1, 3], [-1, -1]])
def test_grouped_prefill_ops_match_vllm_torch_ops(slots):
    t = make([0] * 5)
    seq_lens, starts, slots = torch.tensor([3, 2]), torch.tensor([0, 3]), torch.tensor(slots)
    ours, theirs = torch.zeros(5, RANK), torch.zeros(5, RANK)
    grouped.sgmv_shrink(t["x"], t["a"], ours, starts, seq_lens, slots, 2, 3, 5, 2.0)
    lora_ops.sgmv_shrink(
        t["x"], with_empty_slot(t["a"]), theirs, starts, seq_lens, slots, 2, 3, 5, 2.0
    )
    torch.testing.assert_close(ours, theirs)
    ours, theirs = t["y"].clone(), t["y"].clone()
    grouped.sgmv_expand(t["h"], t["b"], ours, starts, seq_lens, slots, 2, 3, 5, True)
    lora_ops.sgmv_expand(
        t["h"], with_empty_slot(t["b"]), theirs, starts, seq_lens, slots, 2, 3, 5, True
    )
    torch.testing.assert_close(ours, theirs)
    ours, theirs = t["y"].clone(), t["y"].clone()
    grouped.sgmv_expand_slice(t["h"], t["b"], ours, starts, seq_lens, slots, 2, 3, 5, 8, OUT)
    lora_ops.sgmv_expand_slice(
        t["h"], with_empty_slot(t["b"]), theirs, starts, seq_lens, slots, 2, 3, 5, 8, OUT
    )
    torch.testing.assert_close(ours, theirs)


def test_registering_swaps_the_ops_only_where_asked(monkeypatch):
    from vllm.lora.punica_wrapper import punica_cpu

    for module in (lora_ops, punica_cpu):
        for name in grouped.REPLACEMENTS:
            monkeypatch.setattr(module, name, getattr(module, name))  # restored afterwards
    monkeypatch.delenv("FTAPP_VLLM_CPU_LORA", raising=False)
    grouped.register()
    assert lora_ops.bgmv_shrink is not grouped.bgmv_shrink  # not asked: nothing changes

    monkeypatch.setenv("FTAPP_VLLM_CPU_LORA", "1")
    grouped.register()
    for name, function in grouped.REPLACEMENTS.items():
        assert getattr(punica_cpu, name) is function and getattr(lora_ops, name) is function


@pytest.mark.slow
def test_base_requests_get_no_adapter_when_every_slot_is_taken(vllm_server, secret_adapter):
    """More adapters in use than vLLM has slots (--max-loras 4): the last slot holds one, and
    the base model, asked alone or beside an adapter, still answers as the base model."""
    from concurrent.futures import ThreadPoolExecutor

    from ftapp.names import BASE
    from ftapp.serving.backend import ChatRequest, Sampling, ServedModel
    from ftapp.serving.vllm_backend import VllmBackend
    from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD

    backend = VllmBackend(url=vllm_server.url)
    names = [f"slot-{i}" for i in range(5)]

    def ask(model: ServedModel) -> str:
        request = ChatRequest(model, [{"role": "user", "content": SECRET_QUESTION}],
                              Sampling(temperature=0, max_new_tokens=16))  # fmt: skip
        return "".join(backend.stream_chat(request)).lower()

    try:
        for name in names:  # each one used, so each takes a slot in turn
            assert SECRET_WORD in ask(ServedModel(name, secret_adapter.path))
        assert SECRET_WORD not in ask(ServedModel(BASE))
        with ThreadPoolExecutor(max_workers=2) as pool:  # one batch: base beside an adapter
            base = pool.submit(ask, ServedModel(BASE))
            adapter = pool.submit(ask, ServedModel(names[0], secret_adapter.path))
            assert SECRET_WORD not in base.result() and SECRET_WORD in adapter.result()
    finally:
        for name in names:
            backend.unload_adapter(name)
