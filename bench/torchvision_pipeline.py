"""torchvision's version of datafeed's pipelines, timed per sample.

Run by `datafeed-bench pipeline --torchvision` (with Debian's /usr/bin/python3,
which has torch and torchvision); prints one JSON line on stdout.

    torchvision_pipeline.py IMAGES_IDX [--count 2000] [--repeats 3] [--random-sigma]
    torchvision_pipeline.py --image-folder DIR --preset imagenet-train [--count 300] [--repeats 3]

With --image-folder: torchvision.datasets.ImageFolder(DIR, transform=<preset>)
indexed one sample at a time (what a DataLoader worker does per sample: open
the file, PIL decode, convert("RGB"), the transforms), one process,
torch.set_num_threads(1). imagenet-train is RandomResizedCrop(224),
RandomHorizontalFlip(), ToTensor(), Normalize(ImageNet mean/std);
imagenet-eval is Resize(256), CenterCrop(224), ToTensor(), Normalize. The
samples are spread over the folder (every len/count-th) so every class is
read; samples_per_s is the median over `repeats` passes after a warm-up.

What is timed: for each of `count` images of the IDX file, what a
torchvision.datasets.MNIST + transform loop does per sample in one process,
with torch.set_num_threads(1): PIL.Image.fromarray(mode="L") (as
MNIST.__getitem__ does), ToTensor(), Normalize((0.1307,), (0.3081,)) and a
Gaussian blur with kernel 11. The blur is F.gaussian_blur(img, [11, 11]), whose
default sigma (0.3 * ((11 - 1) * 0.5 - 1) + 0.8 = 2.0) is what datafeed's
gaussian_blur(11) uses; --random-sigma times the GaussianBlur(11) class
instead, which draws sigma uniformly from (0.1, 2.0) on every call. samples_per_s
is the median over `repeats` passes, after a 100-sample warm-up.
"""
import argparse
import json
import statistics
import struct
import sys
import time


def read_idx_images(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x00000803:
        sys.exit(f"{path}: not an IDX image file (magic {magic:#010x}, want 0x00000803)")
    return data[16:], count, rows, cols


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="?")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--random-sigma", action="store_true")
    parser.add_argument("--image-folder")
    parser.add_argument("--preset", default="imagenet-train")
    args = parser.parse_args()
    if args.image_folder:
        return image_folder(args)
    if not args.images:
        sys.exit("give an IDX images file, or --image-folder DIR")

    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms
    from torchvision.transforms import functional as F

    torch.set_num_threads(1)
    pixels, count, rows, cols = read_idx_images(args.images)
    n = min(args.count, count)
    images = np.frombuffer(pixels, dtype=np.uint8, count=count * rows * cols).reshape(count, rows, cols)

    if args.random_sigma:
        blur = transforms.GaussianBlur(11)
        blur_name = "GaussianBlur(11): sigma uniform in (0.1, 2.0) per call"
    else:
        blur = lambda t: F.gaussian_blur(t, [11, 11])  # noqa: E731
        blur_name = "F.gaussian_blur(img, 11): default sigma 2.0"
    pipeline = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,)), blur])

    def one_pass(k):
        t0 = time.perf_counter()
        for i in range(k):
            out = pipeline(Image.fromarray(images[i], mode="L"))
        dt = time.perf_counter() - t0
        assert out.shape == (1, rows, cols) and out.dtype == torch.float32
        return k / dt

    one_pass(min(100, n))
    rates = [one_pass(n) for _ in range(max(1, args.repeats))]
    print(json.dumps({
        "samples_per_s": statistics.median(rates),
        "runs": rates,
        "count": n,
        "blur": blur_name,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch.get_num_threads(),
    }))


def image_folder(args):
    import torch
    import torchvision
    from torchvision import transforms

    torch.set_num_threads(1)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if args.preset == "imagenet-train":
        tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), normalize])
    elif args.preset == "imagenet-eval":
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                 transforms.ToTensor(), normalize])
    else:
        sys.exit(f"unknown preset {args.preset}; imagenet-train or imagenet-eval")
    ds = torchvision.datasets.ImageFolder(args.image_folder, transform=tf)
    n = min(args.count, len(ds))
    step = max(1, len(ds) // n)
    picks = [(i * step) % len(ds) for i in range(n)]

    def one_pass(indices):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in indices:
            img, _ = ds[i]
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        assert img.shape == (3, 224, 224) and img.dtype == torch.float32
        return len(indices) / dt, len(indices) / dc

    one_pass(picks[: min(30, n)])
    passes = [one_pass(picks) for _ in range(max(1, args.repeats))]
    rates = [p[0] for p in passes]
    print(json.dumps({
        "samples_per_s": statistics.median(rates),
        "samples_per_cpu_s": statistics.median(p[1] for p in passes),
        "runs": rates,
        "count": n,
        "preset": args.preset,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
