"""Causal language modelling: pretraining on plain text and supervised fine-tuning on
prompt/response pairs, for GPT-2 and Llama-style models (transformers classes).

    tokenizer.py  a local Hugging Face tokenizer, or a byte-level BPE trained on the data
    data.py       text → memory-mapped token file → random windows (pretraining);
                  JSONL prompt/response → padded batches with the prompt masked (SFT)
    model.py      named presets, local pretrained weights, LoRA, FLOPs per token
    train.py      the training loop (built on torchrig.train)

Nothing here downloads: tokenizers and weights come from local folders only.
"""
