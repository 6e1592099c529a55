"""Decoded images end to end, against torchvision itself.

datafeed-producer serves a folder of JPEGs and PNGs written here by PIL
(many sizes and aspect ratios, gray and RGB, nested folders); a
datafeed.Loader must receive exactly what torchvision.datasets.ImageFolder
with the same transforms makes. WebDataset shards written with tarfile must
reach the consumers of two producers once each, and bad files must be named
and counted, and stop the producer when there are too many.
"""

import os
import subprocess
import tarfile

import numpy as np
import pytest

import datafeed
from conftest import CONSUME, PRODUCER, shm_exists, unique_name, wait_for

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402  (python3-pil comes with python3-torchvision)
from torchvision import transforms as T  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
NORMALIZE = "to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)"
EVAL = "resize(256),center_crop(224)," + NORMALIZE


def photo(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - h // 3) ** 2 + (xx - w // 2) ** 2 < (h * w) // 12) * 90
    img = np.stack([yy * 200 // h + disc, 220 - xx * 180 // w, (yy + xx) * 100 // (h + w) + disc // 2], -1)
    return np.clip(img + rng.integers(-10, 11, size=(h, w, 3)), 0, 255).astype(np.uint8)


def write_folder(root, per_class=5):
    """3 classes of images of many sizes; class b's in a nested folder."""
    rng = np.random.default_rng(11)
    n = 0
    for cls in ("a", "b", "c"):
        folder = os.path.join(root, cls, "nested" if cls == "b" else "")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(60, 400)), int(rng.integers(60, 400))
            img = Image.fromarray(photo(rng, h, w))
            if n % 4 == 3:
                img = img.convert("L")
            if n % 5 == 4:
                img.save(os.path.join(folder, "%03d.png" % i))
            else:
                img.save(os.path.join(folder, "%03d.jpg" % i), quality=90)
            n += 1
    return n


def served(root, pipeline, batch_size, **flags):
    """Every (image, label) a Loader receives from one epoch over `root`."""
    images, labels = [], []
    with datafeed.serve(root, pipeline=pipeline, batch_size=batch_size, threads=2, epochs=1,
                        quiet=True, **flags) as producer:
        with datafeed.Loader(producer.endpoint, timeout=60) as loader:
            for image, label in loader:
                images.append(image.clone())
                labels.append(label.clone())
        assert producer.stop() == 0, producer.log_tail()
    return torch.cat(images), torch.cat(labels)


@pytest.mark.parametrize("split", [False, True])
def test_eval_preset_equals_torchvision_imagefolder(tmp_path, split):
    root = str(tmp_path / "images")
    n = write_folder(root)
    flags = {"finish_on_consumer": True} if split else {}
    images, labels = served(root, EVAL, batch_size=4, **flags)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    ds = torchvision.datasets.ImageFolder(root, transform=tf)
    assert len(ds) == n == images.shape[0]
    assert images.shape[1:] == (3, 224, 224)
    worst = 0.0
    for i in range(n):
        want, label = ds[i]
        assert labels[i].item() == label, "sample %d: %s" % (i, ds.samples[i][0])
        worst = max(worst, (images[i] - want).abs().max().item())
    # PIL's decode and resize are reproduced bit for bit; the float steps
    # round like torch's.
    assert worst <= 1e-5, worst


def test_train_preset_serves_a_shuffled_epoch(tmp_path):
    """imagenet-train draws its crops from datafeed's own generator, so its
    pixels cannot be compared with torchvision's run (the crop kernel at
    fixed boxes is, in the C++ goldens); here: every sample once, the shape,
    and values inside what normalize can make."""
    root = str(tmp_path / "images")
    n = write_folder(root, per_class=4)
    images, labels = served(root, "random_resized_crop(224),random_horizontal_flip," + NORMALIZE,
                            batch_size=5, shuffle=True, seed=3)
    assert images.shape == (n, 3, 224, 224)
    assert sorted(labels.tolist()) == sorted([0] * 4 + [1] * 4 + [2] * 4)
    lo = (0 - max(MEAN)) / min(STD)
    hi = (1 - min(MEAN)) / min(STD)
    assert lo - 1e-6 <= images.min().item() and images.max().item() <= hi + 1e-6
    assert torch.isfinite(images).all()


def write_shards(folder, shards, per_shard):
    rng = np.random.default_rng(5)
    n = 0
    for s in range(shards):
        with tarfile.open(os.path.join(folder, "train-%02d.tar" % s), "w") as tar:
            for _ in range(per_shard):
                key = "s%d/%06d" % (s, n)
                h, w = int(rng.integers(50, 200)), int(rng.integers(50, 200))
                path = os.path.join(folder, "tmp.jpg")
                Image.fromarray(photo(rng, h, w)).save(path, quality=90)
                tar.add(path, arcname=key + ".jpg")
                cls = os.path.join(folder, "tmp.cls")
                with open(cls, "w") as f:
                    f.write(str(n))
                tar.add(cls, arcname=key + ".cls")
                n += 1
    return n


def test_webdataset_shards_reach_two_producers_consumers_once(tmp_path):
    n = write_shards(str(tmp_path), shards=5, per_shard=6)
    seen = []
    for shard in (0, 1):
        name = unique_name("wds")
        p = subprocess.Popen([PRODUCER, "--webdataset", str(tmp_path / "train-{00..04}.tar"),
                              "--pipeline", "random_resized_crop(64)," + NORMALIZE,
                              "--batch-size", "4", "--threads", "2", "--shuffle",
                              "--shard", str(shard), "--num-shards", "2", "--quiet",
                              "--endpoint", "shm://" + name],
                             stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: shm_exists(name) or p.poll() is not None, timeout=30, what="the producer")
            with datafeed.Loader("shm://" + name, timeout=60) as loader:
                for image, label in loader:
                    assert image.shape[1:] == (3, 64, 64)
                    seen += label.tolist()
            assert p.wait(timeout=60) == 0, p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sorted(seen) == list(range(n))


def run_producer(*args, timeout=60):
    """Runs the producer to its end with a consumer reading its batches (a
    producer ends only once every batch was acknowledged)."""
    name = unique_name("bad")
    p = subprocess.Popen([PRODUCER, "--endpoint", "shm://" + name, "--quiet", "--slots", "8",
                          "--linger-ms", "0", "--finish-grace-ms", "0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    consumer = subprocess.Popen([CONSUME, "--endpoint", "shm://" + name, "--connect-timeout-ms", "30000",
                                 "--timeout-ms", "60000", "--report-s", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        consumer.kill()
        consumer.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_bad_files_are_named_counted_and_stop_the_producer_when_too_many(tmp_path):
    root = str(tmp_path / "images")
    n = write_folder(root, per_class=10)
    for i in range(3):
        with open(os.path.join(root, "a", "broken%d.jpg" % i), "wb") as f:
            f.write(b"\xff\xd8\xff not a jpeg")
    common = ["--image-folder", root, "--pipeline", EVAL, "--batch-size", "11", "--threads", "2"]
    ok = run_producer(*common, "--max-bad-fraction", "0.2")
    assert ok.returncode == 0, ok.stderr
    assert "broken" in ok.stderr and "not a readable JPEG" in ok.stderr
    assert "(3 bad: 0 read, 3 decode, 0 size, 0 transform)" in ok.stderr

    stopped = run_producer(*common)  # the default budget: 0.1 %
    assert stopped.returncode == 1
    assert "3 bad samples" in stopped.stderr or "bad samples (" in stopped.stderr, stopped.stderr
    assert "--max-bad-fraction" in stopped.stderr
    assert "broken" in stopped.stderr

    fail = run_producer(*common, "--bad-samples", "fail")
    assert fail.returncode == 1 and "--bad-samples fail" in fail.stderr
    assert n == 30


def test_an_image_pipeline_that_would_vary_in_size_is_refused_at_start(tmp_path):
    root = str(tmp_path / "images")
    write_folder(root, per_class=1)
    r = run_producer("--image-folder", root, "--pipeline", "resize(64),to_tensor")
    assert r.returncode == 1
    assert "center_crop(S), random_resized_crop(S) or resize(H, W)" in r.stderr
    r = run_producer("--image-folder", root)
    assert r.returncode == 1 and "--preset imagenet-train" in r.stderr
