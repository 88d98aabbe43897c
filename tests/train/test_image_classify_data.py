"""The image-classify recipe's pieces on a CPU: the folder scan, the decoded cache (reuse,
rebuild, parallel build, unreadable files), resumable rank-disjoint batches, the hold-out,
the device augmentation, the models and their weights, the mistakes grid."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchrig.errors import UsageError
from torchrig.recipes.classify.task import Mistake
from torchrig.recipes.image_classify import augment, cache, models
from torchrig.recipes.image_classify.data import EvalSet, ImageBatches, crop_params, holdout
from torchrig.recipes.image_classify.folder import check_val_classes, scan
from torchrig.recipes.image_classify.mistakes import draw_mistakes

# Four classes a tiny CNN tells apart only by looking at both colour and stripe direction
# (horizontal flips and crops keep both).
CLASSES = {
    "blue-horizontal": ((40, 60, 200), False),
    "blue-vertical": ((40, 60, 200), True),
    "red-horizontal": ((200, 40, 40), False),
    "red-vertical": ((200, 40, 40), True),
}


def make_tree(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """JPEGs of 40-63 px, stripes of random period and phase, with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, (colour, vertical) in CLASSES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = int(rng.integers(40, 64)), int(rng.integers(40, 64))
            period = int(rng.integers(6, 12))
            coord = np.arange(w)[None, :] if vertical else np.arange(h)[:, None]
            stripes = np.broadcast_to(((coord + rng.integers(period)) // (period // 2)) % 2, (h, w))
            base = np.where(stripes[..., None] == 1, np.array(colour), 235)
            pixels = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("images") / "train", per_class=12)


def _quiet(_: str) -> None:
    pass


# --- the folder ---------------------------------------------------------------------------


def test_scan_sorts_classes_finds_nested_images_and_ignores_the_rest(tmp_path: Path) -> None:
    from PIL import Image

    for rel in ["b/x.PNG", "b/deeper/y.webp", "a/z.jpeg", "a/w.bmp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        fmt = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "bmp": "BMP"}[
            rel.rsplit(".")[-1].lower()
        ]
        Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / rel, format=fmt)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.jpg").write_bytes(b"")
    (tmp_path / ".cache").mkdir()
    found = scan(tmp_path)
    assert found.classes == ["a", "b"]
    assert found.paths == ["a/w.bmp", "a/z.jpeg", "b/deeper/y.webp", "b/x.PNG"]
    assert found.labels == [0, 0, 1, 1]


def test_scan_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        scan(tmp_path / "nope")
    (tmp_path / "root").mkdir()
    with pytest.raises(UsageError, match="no class folders"):
        scan(tmp_path / "root")
    make_tree(tmp_path / "root", per_class=1)
    (tmp_path / "root" / "empty").mkdir()
    with pytest.raises(UsageError, match=r"class folder .*root/empty has no images"):
        scan(tmp_path / "root")


def test_a_validation_label_unseen_in_training_is_an_error(tmp_path: Path) -> None:
    train = scan(make_tree(tmp_path / "train", per_class=1))
    (tmp_path / "val" / "red-vertical").mkdir(parents=True)
    (tmp_path / "val" / "green").mkdir(parents=True)
    for name in ("red-vertical", "green"):
        (tmp_path / "val" / name / "a.jpg").write_bytes(
            (tmp_path / "train" / "red-vertical" / "000.jpg").read_bytes()
        )
    val = scan(tmp_path / "val", "--val")
    with pytest.raises(UsageError, match="label 'green' is unseen in training"):
        check_val_classes(train, val)
    (tmp_path / "val" / "green" / "a.jpg").unlink()
    (tmp_path / "val" / "green").rmdir()
    assert check_val_classes(train, scan(tmp_path / "val")) == [3]  # red-vertical in train


# --- the cache ----------------------------------------------------------------------------


def test_cache_is_built_reused_and_rebuilt_when_a_file_changes(tree: Path, tmp_path: Path) -> None:
    folder = scan(tree)
    first = cache.build_cache(folder, tmp_path, 36, say=_quiet)
    assert first.built and len(first) == len(folder) == 48 and not first.skipped
    assert first.images.shape == (48, 36, 36, 3) and first.images.dtype == np.uint8
    meta = json.loads(cache.sidecar(first.path).read_text())
    assert meta["count"] == 48 and meta["size"] == 36
    # The same rows as decoding one file directly.
    np.testing.assert_array_equal(first.images[5], cache.decode(tree / folder.paths[5], 36))

    again = cache.build_cache(scan(tree), tmp_path, 36, say=_quiet)
    assert not again.built  # unchanged tree: reused, nothing decoded
    other_size = cache.build_cache(scan(tree), tmp_path, 40, say=_quiet)
    assert other_size.built and other_size.path != first.path

    changed = tree / folder.paths[0]
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        rebuilt = cache.build_cache(scan(tree), tmp_path, 36, say=_quiet)
        assert rebuilt.built and rebuilt.path == first.path
    finally:
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    # No temporaries left behind.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_parallel_build_matches_the_in_process_build(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = cache.build_cache(scan(tree), tmp_path / "serial", 36, workers=1, say=_quiet)
    monkeypatch.setattr(cache, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(cache, "CHUNK", 8)
    pooled = cache.build_cache(scan(tree), tmp_path / "pooled", 36, workers=2, say=_quiet)
    assert pooled.workers == 2 and serial.workers == 1
    np.testing.assert_array_equal(np.asarray(pooled.images), np.asarray(serial.images))


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "train", per_class=3)
    good = (root / "red-vertical" / "000.jpg").read_bytes()
    (root / "red-vertical" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "blue-vertical" / "garbage.jpg").write_bytes(b"this is not a JPEG")
    built = cache.build_cache(scan(root), tmp_path / "cache", 36, say=_quiet)
    assert [p for _, p, _ in built.skipped] == [
        "blue-vertical/garbage.jpg",
        "red-vertical/truncated.jpg",
    ]
    assert all(reason for _, _, reason in built.skipped)
    assert not built.readable(built.skipped[0][0]) and built.readable(0)
    # The skipped list survives reuse.
    reused = cache.build_cache(scan(root), tmp_path / "cache", 36, say=_quiet)
    assert not reused.built and reused.skipped == built.skipped


def test_decode_resizes_the_short_side_and_takes_the_centre(tmp_path: Path) -> None:
    from PIL import Image

    # 300 × 100: left third red, middle green, right blue; the centre square is green.
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, :100, 0] = pixels[:, 100:200, 1] = pixels[:, 200:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = cache.decode(tmp_path / "wide.png", 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert (out[:, 2:-2, 1] > 200).all() and (out[:, 2:-2, [0, 2]] < 30).all()


# --- batches and the hold-out --------------------------------------------------------------


def _fake_images(n: int = 50, size: int = 4) -> Any:
    rows = np.arange(n, dtype=np.uint8)[:, None, None, None]
    return np.broadcast_to(rows, (n, size, size, 3)).copy()


def test_batches_cover_each_epoch_once_disjointly_over_ranks_and_resume_exactly() -> None:
    images, rows = _fake_images(), np.arange(1, 50)  # row 0 "unreadable": never drawn
    labels = np.arange(50) % 3
    ranks = [ImageBatches(images, rows, labels, 6, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0].per_rank == 24
    # 4 batches of 6 = one epoch of one rank: each rank sees distinct rows, ranks disjoint.
    seen = []
    for batches in ranks:
        got = [next(batches) for _ in range(4)]
        drawn = np.concatenate([inputs[0][:, 0, 0, 0].numpy() for inputs, _ in got])
        assert len(set(drawn.tolist())) == 24
        for (pixels, theta), y in got:
            assert pixels.dtype == torch.uint8 and pixels.shape == (6, 4, 4, 3)
            assert theta.dtype == torch.float32 and theta.shape == (6, 2, 3)
            assert torch.equal(y, torch.as_tensor(labels[pixels[:, 0, 0, 0].numpy()]))
        seen.append(set(drawn.tolist()))
    assert not seen[0] & seen[1] and 0 not in seen[0] | seen[1]

    straight = ImageBatches(images, rows, labels, 5, seed=3)
    expected = [next(straight) for _ in range(12)]  # crosses the epoch boundary (49 rows)
    first = ImageBatches(images, rows, labels, 5, seed=3)
    for _ in range(7):
        next(first)
    resumed = ImageBatches(images, rows, labels, 5, seed=3)
    resumed.load_state_dict(first.state_dict())
    for (a_in, a_y), (b_in, b_y) in zip(
        expected[7:], [next(resumed) for _ in range(5)], strict=True
    ):
        assert torch.equal(a_y, b_y)
        assert all(torch.equal(a, b) for a, b in zip(a_in, b_in, strict=True))
    other = ImageBatches(images, rows, labels, 5, seed=4)
    assert not torch.equal(next(other)[0][1], expected[0][0][1])  # the seed decides
    with pytest.raises(UsageError, match="batch_size 5 → 6"):
        ImageBatches(images, rows, labels, 6, seed=3).load_state_dict(first.state_dict())


def test_holdout_is_stratified_deterministic_and_disjoint() -> None:
    labels = np.array([0] * 30 + [1] * 10 + [2] * 1)
    rows = np.arange(41)
    train, val = holdout(labels, rows, 0.2, seed=1)
    assert sorted([*train, *val]) == list(range(41)) and not set(train) & set(val)
    assert np.bincount(labels[val], minlength=3).tolist() == [6, 2, 0]  # a lone image stays
    again_train, again_val = holdout(labels, rows, 0.2, seed=1)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(holdout(labels, rows, 0.2, seed=2)[1], val)


def test_eval_set_yields_every_row_in_order_with_ids() -> None:
    images = _fake_images(10)
    ev = EvalSet(images, [2, 5, 7], np.arange(10) % 2, [f"img{i}" for i in range(10)], 2)
    batches = list(ev())
    assert [b[2] for b in batches] == [["img2", "img5"], ["img7"]]
    assert batches[0][1].tolist() == [0, 1] and batches[0][0][0].shape == (2, 4, 4, 3)
    assert [b[2] for b in ev()] == [b[2] for b in batches]  # the same every call


# --- augmentation --------------------------------------------------------------------------


def _mean_std() -> tuple[Any, Any]:
    return (
        torch.tensor(augment.IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(augment.IMAGENET_STD).view(1, 3, 1, 1),
    )


def test_train_transform_shape_dtype_range_and_flip() -> None:
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (5, 36, 36, 3), dtype=torch.uint8, generator=g)
    theta = torch.from_numpy(crop_params(5, np.random.default_rng(0)))
    out = augment.train_transform(pixels, theta, 32)
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    mean, std = _mean_std()
    lo, hi = (0 - mean) / std, (1 - mean) / std
    assert bool((out >= lo - 1e-5).all()) and bool((out <= hi + 1e-5).all())
    # Identity theta at the cached size reproduces the image exactly; a flip mirrors it.
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(5, 2, 3)
    same = augment.train_transform(pixels, identity, 36)
    expected = (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(same, expected, atol=1e-4, rtol=0)
    flip = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0]]).expand(5, 2, 3)
    torch.testing.assert_close(
        augment.train_transform(pixels, flip, 36), expected.flip(-1), atol=1e-4, rtol=0
    )
    # Deterministic: the same batch and parameters give the same pixels.
    assert torch.equal(out, augment.train_transform(pixels, theta, 32))


def test_crop_params_stay_inside_the_image_and_cover_the_scale_range() -> None:
    theta = crop_params(4000, np.random.default_rng(1), min_scale=0.25)
    w, h = np.abs(theta[:, 0, 0]), theta[:, 1, 1]
    assert (np.abs(theta[:, 0, 2]) + w <= 1 + 1e-6).all()
    assert (np.abs(theta[:, 1, 2]) + h <= 1 + 1e-6).all()
    area = w * h
    assert area.min() < 0.3 and area.max() > 0.95 and (area >= 0.25 - 1e-6).all()
    assert 0.45 < (theta[:, 0, 0] < 0).mean() < 0.55  # half flipped
    assert (crop_params(100, np.random.default_rng(1), flip=False)[:, 0, 0] > 0).all()


def test_eval_transform_is_the_centre_crop() -> None:
    pixels = torch.randint(0, 256, (2, 36, 36, 3), dtype=torch.uint8)
    out = augment.eval_transform(pixels, 32)
    mean, std = _mean_std()
    expected = (pixels[:, 2:34, 2:34].permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    prepare = augment.make_prepare(32)
    assert torch.equal(prepare((pixels,), False)[0], out)


# --- models and weights --------------------------------------------------------------------


def test_tiny_cnn_gives_logits_and_flops_count_convolutions_and_the_head() -> None:
    model = models.build("tiny-cnn", 4)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    assert models.source("tiny-cnn") == "tiny" and models.source("timm:vit_tiny") == "timm"
    assert models.source("resnet50") == "torchvision"
    # A net whose FLOPs are known by hand: conv 3→8 (3×3, 8×8 outputs) and a linear layer.
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 64, 5)
    )
    by_hand = 2 * (3 * 9 * 8 * 64 + 8 * 64 * 5)
    assert models.flops_per_sample(net, 8) == 3 * by_hand
    model.train()
    models.flops_per_sample(model, 32)
    assert model.training  # left as found


def test_weights_load_with_the_head_skipped_and_wrong_ones_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = models.build("tiny-cnn", 10)  # "ImageNet" with 10 classes
    save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "w.safetensors"
    )
    target = models.build("tiny-cnn", 4)
    notes = models.load_weights(target, tmp_path / "w.safetensors")
    assert "skipped 2 tensor(s) whose shape differs" in notes[1]
    assert "fc.weight (10, 64) → (4, 64)" in notes[1] and "fc.bias (10,) → (4,)" in notes[1]
    assert torch.equal(target.stem[0].weight, source.stem[0].weight)
    assert not torch.equal(target.fc.bias, source.fc.bias[:4])

    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
        tmp_path / "w.pt",
    )
    assert models.load_weights(models.build("tiny-cnn", 4), tmp_path / "w.pt")[0].startswith(
        "weights: "
    )

    partial = dict(list(source.state_dict().items())[:5])  # another architecture's share
    torch.save({**partial, "extra.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match=r"does not fit the model: \d+ missing .*1 unexpected"):
        models.load_weights(target, tmp_path / "other.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "none.pt")
    with pytest.raises(UsageError, match="none of the 1 tensors"):
        models.load_weights(target, tmp_path / "none.pt")
    torch.save({"obj": Mistake("a", 0, 1, 0.5)}, tmp_path / "pickle.pt")
    with pytest.raises(UsageError, match="Python objects other than tensors"):
        models.load_weights(target, tmp_path / "pickle.pt")
    with pytest.raises(UsageError, match="does not exist"):
        models.load_weights(target, tmp_path / "missing.pt")


def test_mistakes_grid_is_a_png(tmp_path: Path) -> None:
    image = np.zeros((36, 36, 3), dtype=np.uint8)
    mistakes = [Mistake(f"m{i}", i % 2, 1 - i % 2, 0.5 + i / 100) for i in range(40)]
    target = tmp_path / "mistakes.png"
    assert draw_mistakes(mistakes, ["cat", "dog"], lambda _: image, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert draw_mistakes([], ["cat", "dog"], lambda _: image, tmp_path / "none.png") is None
    assert [p.name for p in tmp_path.iterdir()] == ["mistakes.png"]  # no temporaries


def test_a_new_image_size_brings_its_own_cache_size() -> None:
    from torchrig.recipes.image_classify.config import from_preset

    assert from_preset("tiny").resolved_cache_size == 36
    assert from_preset("tiny", image_size=48).resolved_cache_size == 55
    assert from_preset("tiny", image_size=48, cache_size=64).resolved_cache_size == 64
    assert from_preset("resnet50", image_size=160).resolved_cache_size == 183
