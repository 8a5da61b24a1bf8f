"""awqcpp's Python API on SmolLM2-135M: AutoAWQ's calls, the evaluation functions, numpy in and
out, errors as AwqError with the CLI's messages, progress, Ctrl-C and the GIL."""

import hashlib
import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import awqcpp
from awqcpp import AutoAWQForCausalLM, AutoTokenizer, AwqError

from conftest import EMMA, MODEL, QUANT_CONFIG, SMALL

N_LAYERS = 30  # SmolLM2-135M
LINEARS_PER_LAYER = 7  # q, k, v, o, gate, up, down


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_awq_error_is_value_and_runtime_error():
    assert issubclass(AwqError, ValueError) and issubclass(AwqError, RuntimeError)


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(AwqError, match="no such file"):
        AutoAWQForCausalLM.from_pretrained(str(tmp_path / "nope.gguf"))


def test_bad_quant_config_is_the_library_message():
    model = AutoAWQForCausalLM.from_pretrained(str(MODEL))
    with pytest.raises(AwqError, match=r"quant_config: w_bitz: unknown key"):
        model.quantize(quant_config={"w_bitz": 4}, progress=False)
    with pytest.raises(AwqError, match="q_group_size"):
        model.quantize(quant_config={"q_group_size": 100}, progress=False)


def test_group_size_that_does_not_divide_names_the_layer():
    model = AutoAWQForCausalLM.from_pretrained(str(MODEL))
    # 576 (SmolLM2's width) is not a multiple of 256.
    with pytest.raises(AwqError, match="576"):
        model.quantize(quant_config={"q_group_size": 256}, method="rtn", progress=False)


def test_unknown_dataset_name_is_refused():
    model = AutoAWQForCausalLM.from_pretrained(str(MODEL))
    with pytest.raises(AwqError, match="does not download"):
        model.quantize(calib_data="mit-han-lab/pile-val-backup", progress=False)


def test_tokenizer_shim_round_trip():
    tok = AutoTokenizer.from_pretrained(str(MODEL))
    ids = tok.encode("Emma Woodhouse, handsome, clever, and rich")
    assert tok.decode(ids) == "Emma Woodhouse, handsome, clever, and rich"
    batch = tok(["a b", "c d"], return_tensors="np")
    assert batch["input_ids"].shape == (2, len(tok.encode("a b")))
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "<|im_start|>user\nHi<|im_end|>" in chat
    assert tok.eos_token_id is not None


def test_quantize_writes_an_autoawq_checkpoint(quantized):
    model, report, out = quantized
    assert report["calib_blocks"] > 0
    assert report["quantized_linears"] == N_LAYERS * LINEARS_PER_LAYER
    assert len(report["blocks"]) == N_LAYERS
    cfg = json.load(open(out / "config.json"))
    q = cfg["quantization_config"]
    assert (q["bits"], q["group_size"], q["zero_point"], q["version"]) == (4, 64, True, "gemm")
    for f in ("model.safetensors", "tokenizer.json", "quant_config.json"):
        assert (out / f).exists()


def test_streaming_quantization_writes_the_same_bytes(quantized, tmp_path):
    _, _, out = quantized
    stream = tmp_path / "stream"
    awqcpp.quantize_to_folder(str(MODEL), str(stream), QUANT_CONFIG, calib_data=str(EMMA),
                              progress=False, **SMALL)
    assert sha256(stream / "model.safetensors") == sha256(out / "model.safetensors")
    assert not (tmp_path / "stream.partial").exists()


@pytest.mark.skipif(not os.environ.get("AWQ_CLI"), reason="AWQ_CLI (the awq binary) not set")
def test_checkpoint_equals_the_cli_with_the_same_options(quantized, tmp_path):
    """The AutoAWQ calls write what `awq quantize` writes with the same options."""
    _, _, out = quantized
    config = tmp_path / "search.json"
    config.write_text(json.dumps({"n_grid": SMALL["n_grid"]}))
    cli = tmp_path / "cli"
    subprocess.run([os.environ["AWQ_CLI"], "quantize", str(MODEL), str(cli), "--config", str(config),
                    "--q-group-size", str(QUANT_CONFIG["q_group_size"]), "--calib-data", str(EMMA),
                    "--max-calib-samples", str(SMALL["max_calib_samples"]),
                    "--max-calib-seq-len", str(SMALL["max_calib_seq_len"])],
                   check=True, stdout=subprocess.DEVNULL)
    for f in ("model.safetensors", "config.json", "quant_config.json", "tokenizer.json"):
        assert sha256(cli / f) == sha256(out / f), f


def test_token_id_calibration_matches_its_jsonl_file(tmp_path):
    tok = AutoTokenizer.from_pretrained(str(MODEL))
    text = open(EMMA, encoding="utf-8").read()
    samples = [tok.encode(p.strip()) for p in text.split("\n\n") if p.strip()][:40]
    jsonl = tmp_path / "ids.jsonl"
    jsonl.write_text("".join(json.dumps({"input_ids": s}) + "\n" for s in samples))
    settings = dict(quant_config=QUANT_CONFIG, max_calib_samples=40, max_calib_seq_len=64,
                    n_grid=2, progress=False)
    a = awqcpp.quantize_to_folder(str(MODEL), str(tmp_path / "a"), calib_data=samples, **settings)
    b = awqcpp.quantize_to_folder(str(MODEL), str(tmp_path / "b"), calib_data=str(jsonl),
                                  **settings)
    assert a["calib_tokens"] == b["calib_tokens"] > 0
    assert sha256(tmp_path / "a" / "model.safetensors") == sha256(tmp_path / "b" / "model.safetensors")


def test_from_quantized_generates_and_evaluates(quantized):
    _, _, out = quantized
    model = AutoAWQForCausalLM.from_quantized(str(out))
    assert model.model.uses_int4
    tok = AutoTokenizer.from_pretrained(str(out))
    prompt = tok("The capital of France is", return_tensors="np")["input_ids"]
    ids = model.generate(prompt, max_new_tokens=8)
    assert isinstance(ids, np.ndarray) and ids.shape[0] == 1
    assert ids.shape[1] > prompt.shape[1] and (ids[0, :prompt.shape[1]] == prompt[0]).all()
    assert isinstance(model.generate("Once upon a time", max_new_tokens=4), str)
    logits = model.logits(prompt)
    assert logits.dtype == np.float32 and logits.shape == (prompt.shape[1], model.model.vocab_size)
    ppl = awqcpp.perplexity(model, str(EMMA), ctx=256, max_tokens=1024, progress=False)
    assert ppl["n_windows"] == 4 and 1 < ppl["perplexity"] < 100


def test_validate_and_inspect(quantized):
    _, _, out = quantized
    r = awqcpp.validate(str(MODEL), str(out), ctx=256, max_tokens=1024, progress=False)
    assert r["passed"], r["reasons"]
    assert {c["metric"] for c in r["checks"]} == {"relative_error", "correlation", "kl", "top1",
                                                  "ppl_ratio"}
    strict = awqcpp.validate(str(MODEL), str(out), ctx=256, max_tokens=1024, progress=False,
                             min_top1=1.01)
    assert not strict["passed"] and any("top1" in s for s in strict["reasons"])
    info = awqcpp.inspect(str(out))
    quantized_entries = [e for e in info["sizes"]["entries"] if e["quantized"]]
    assert len(quantized_entries) == N_LAYERS * LINEARS_PER_LAYER
    assert info["quant_config"]["w_bit"] == 4 and info["quant_config"]["q_group_size"] == 64
    # 4-bit codes, plus an fp16 scale and a 4-bit zero per 64 weights: 4 + 20 / 64 bits.
    assert info["sizes"]["quantized"]["bits_per_weight"] == pytest.approx(4 + 20 / 64, abs=1e-3)


def test_progress_callback_and_interrupt_leave_no_output(tmp_path):
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        awqcpp.quantize_to_folder(str(MODEL), str(out), QUANT_CONFIG, method="rtn",
                                  progress=progress)
    assert calls == [(1, N_LAYERS), (2, N_LAYERS)]
    assert not out.exists() and not (tmp_path / "out.partial").exists()
    assert list(tmp_path.iterdir()) == []


def test_sigint_stops_quantize_and_the_model_reloads(tmp_path):
    model = AutoAWQForCausalLM.from_pretrained(str(MODEL))
    model.model  # load first, so that the signal lands in the quantization
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.quantize(quant_config=QUANT_CONFIG, calib_data=str(EMMA), progress=False,
                           **SMALL)
    finally:
        timer.cancel()
    with pytest.raises(AwqError, match="call quantize"):
        model.save_quantized(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    # The half-quantized weights were dropped: the next use reads the file again.
    assert model.quantize(quant_config=QUANT_CONFIG, method="rtn", progress=False)["method"] == "rtn"


def test_long_calls_release_the_gil(quantized):
    _, _, out = quantized
    model = AutoAWQForCausalLM.from_quantized(str(out))
    done = threading.Event()

    def run():
        awqcpp.perplexity(model, str(EMMA), ctx=256, max_tokens=1024, progress=False)
        done.set()

    t = threading.Thread(target=run)
    t.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert ticks > 10


def test_quantize_tensor_numpy():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    r = awqcpp.quantize_tensor(w, {"q_group_size": 64})
    assert r["codes"].shape == (64, 256) and r["codes"].dtype == np.uint8
    assert r["scales"].shape == (64, 4) and r["zeros"].shape == (64, 4)
    assert r["codes"].max() <= 15
    assert r["metrics"]["correlation"] > 0.98
    x = rng.standard_normal((128, 256)).astype(np.float32)
    a = awqcpp.quantize_tensor(w, {"q_group_size": 64}, x=x)
    assert a["input_scales"].shape == (256,) and a["loss"] <= a["rtn_loss"] * 1.0001
    with pytest.raises(AwqError, match="group size 48 does not divide|q_group_size"):
        awqcpp.quantize_tensor(w, {"q_group_size": 48})
