"""The image-classify recipe: fine-tune or train an image classifier on an ImageFolder tree.

python -m torchrig.recipes.image_classify --preset resnet50 --data images/ --out runs/r50

folder    the ImageFolder tree: labels, files, the checks a person can act on
cache     decode every image once into a memory-mapped uint8 file (parallel, reused)
data      training batches (epoch permutations, rank-disjoint, resumable) and eval batches
augment   random-resized crop + flip + normalise on the device, in one grid_sample
models    tiny-cnn, torchvision and timm models; local weights; FLOPs per image
mistakes  OUT/mistakes.png, the most confident misclassified validation images
task      config → ClassifyTask for the shared loop (torchrig.recipes.classify.loop)
train     train(cfg): the loop with this recipe's task
export    build_model / export_inputs for `torchrig export-model`
"""
