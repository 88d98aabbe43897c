"""Using trained models: `torchrig predict`, `torchrig generate` and `torchrig serve`.

kinds       what a path names: a classifier run, a causal-LM run, its final/ or export/
classifier  a text or image classifier (PyTorch or ONNX Runtime), batch in, rows out
lm          a causal LM (full model or LoRA adapter + base) and its tokenizer
sampling    next-token choice: greedy, temperature, top-p
generate    KV-cached generation with stop strings and the context-length rule
textstream  token ids → text deltas (UTF-8 pieces and stop strings held back)
batcher     dynamic batching of single requests (max batch, max wait)
openai_api  the OpenAI request/response shapes (completions, chat completions)
metrics     the Prometheus metrics
limits      the request-size limit (ASGI middleware)
app         the FastAPI application: routes, auth, errors
server      uvicorn with the listening address, limits and graceful shutdown
"""
