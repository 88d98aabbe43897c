"""Text classification (ticket intents and the like): fine-tuning BERT from local data.

    rows.py       CSV / JSONL rows → texts, labels, ids; class names; the stratified hold-out
    tokenizer.py  a local Hugging Face tokenizer, or a BERT WordPiece trained on the data
    data.py       texts → cached token arrays → fixed-shape batches (exactly resumable)
    model.py      BertForSequenceClassification (named shapes or local weights) behind a
                  forward(input_ids, attention_mask) -> logits; FLOPs per sequence
    config.py     presets (tiny, bert-base) and the recipe's settings
    train.py      the pieces put together as a ClassifyTask for the shared loop
    export.py     the trained module rebuilt from classifier.json, with example inputs

Nothing here downloads: data, tokenizers and weights come from local files only.
"""
