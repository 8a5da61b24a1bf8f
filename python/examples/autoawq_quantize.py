"""AutoAWQ's README quantization example with only the imports changed, on the default model.

Two settings differ: q_group_size 64, because SmolLM2's width (576) is not a multiple of 128 (a
7B model takes the README's 128), and max_calib_samples=16 (AutoAWQ's default is 128), so that it
runs in minutes on two cores; drop it for the real thing. Then the quantized model is loaded back,
generates, and is validated against the original, as docs/PYTHON.md describes.

    python python/examples/autoawq_quantize.py [MODEL] [OUT]
"""

import sys

from awqcpp import AutoAWQForCausalLM, AutoTokenizer

model_path = sys.argv[1] if len(sys.argv) > 1 else "assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
quant_path = sys.argv[2] if len(sys.argv) > 2 else "out/smollm2-awq"
quant_config = {"zero_point": True, "q_group_size": 64, "w_bit": 4, "version": "GEMM"}

# Load model
model = AutoAWQForCausalLM.from_pretrained(model_path)
tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)

# Quantize
model.quantize(tokenizer, quant_config=quant_config, max_calib_samples=16)

# Save quantized model
model.save_quantized(quant_path)
tokenizer.save_pretrained(quant_path)

print(f'Model is quantized and saved at "{quant_path}"')

# What AutoAWQ's other examples do next: load the checkpoint and generate.
import awqcpp  # noqa: E402

quantized = AutoAWQForCausalLM.from_quantized(quant_path)
chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="np")
out = quantized.generate(chat, max_new_tokens=32)
print(tokenizer.decode(out[0, chat.shape[1]:], skip_special_tokens=True))

# And what AutoAWQ has no call for: the quantized model against the original.
report = awqcpp.validate(model_path, quant_path, max_tokens=2048)
print(f"perplexity {report['ppl_reference']:.3f} -> {report['ppl_quantized']:.3f}, "
      f"top-1 agreement {report['top1_agreement']:.3f}, mean KL {report['mean_kl']:.4f}: "
      f"{'PASS' if report['passed'] else 'FAIL: ' + '; '.join(report['reasons'])}")
