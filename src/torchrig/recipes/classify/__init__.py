"""What the classification recipes (text-classify, image-classify) share.

    config    ClassifyConfig: the training settings both recipes take (steps, batch, lr, ...)
    task      ClassifyTask: what a recipe hands the loop (model, data, labels, metadata)
    loop      run(task, cfg): the training loop, evaluation, checkpoints, final model
    evaluate  accuracy, macro-F1, per-class report, confusion matrix (numbers and PNG)
    meta      OUT/classifier.json: labels and what export needs to rebuild the model

A recipe builds its data and model, wraps them in a ClassifyTask and calls `loop.run`.
`torchrig export-model` rebuilds a trained model from classifier.json through the recipe's
`export` module (`build_model`, `export_inputs`).
"""
