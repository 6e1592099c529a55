#!/usr/bin/python3
"""Writes the torchvision parity goldens of datafeed's transforms.

Run with an interpreter that has torch and torchvision (Debian: /usr/bin/python3):

    /usr/bin/python3 producer/tools/make_goldens.py [--out tests/producer/golden]

It builds a fixed set of small uint8 HWC images from a seeded numpy RNG, runs
every case of CASES through torchvision (tensor ops; to_tensor from numpy,
checked against to_tensor from PIL), and writes inputs, outputs and a manifest
that tests/producer/transform_test.cc replays through datafeed's Pipeline,
requiring max |datafeed - torchvision| <= 1e-5.

File format (<name>.bin, little-endian): b"DFGT", uint8 dtype (1 = uint8,
8 = float32, datafeed's DType numbering), uint8 ndim, 2 zero bytes, ndim int32
dims, then the elements in C order. Inputs are HWC uint8, outputs CHW float32.

manifest.txt, one case per line, fields separated by single spaces:
    pipeline <input> <output> <spec>
    crop <input> <output> <top> <left> <height> <width>
It also writes image_folder/, a tiny ImageFolderDataset fixture encoded by PIL:
cat/0_rgb.png (color0, lossless), cat/1_gray.png (gray2, 28x28, mode L) and
dog/0.jpg (color1, quality 95).

A crop case is to_tensor followed by a crop of the zero-padded image at a
fixed offset (top/left < 0 reach into the padding): the deterministic part of
random_crop (torchvision: F.crop(F.pad(img, pad), top + pad, left + pad, h, w)).
"""
import argparse
import os
import struct

import numpy as np
import PIL.Image
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F

SEED = 20240611

# (spec, inputs). Specs use datafeed's pipeline syntax; no spaces.
GRAY = ["gray0", "gray1", "gray2", "gray3"]
COLOR = ["color0", "color1"]
REF = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)"
CASES = [
    ("to_tensor", GRAY + COLOR),
    ("to_tensor,normalize(0.1307,0.3081)", GRAY + COLOR[:1]),
    ("to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)", COLOR),
    (REF, GRAY + COLOR[:1]),
    ("to_tensor,normalize(0.1307,0.3081),gaussian_blur(11,0.1)", GRAY[:1]),
    ("to_tensor,normalize(0.1307,0.3081),gaussian_blur(11,2.7)", GRAY[:1]),
    ("to_tensor,gaussian_blur(3)", GRAY[:2]),
    ("to_tensor,gaussian_blur(5,0.7)", GRAY[2:] + COLOR[1:]),
    ("to_tensor,gaussian_blur(27)", GRAY[1:2]),
    ("to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225),gaussian_blur(7,1.5)", COLOR[:1]),
    ("to_tensor,resize(14)", GRAY[:2]),
    ("to_tensor,resize(40,36)", GRAY[2:]),
    ("to_tensor,resize(19,23)", GRAY[:1]),
    ("to_tensor,resize(16)", COLOR[:1]),
    ("to_tensor,resize(45,50)", COLOR[1:]),
    ("resize(20),to_tensor", GRAY[:2]),
    ("resize(13,31),to_tensor", GRAY[2:3]),
    ("resize(24,30),to_tensor", COLOR[:1]),
    ("resize(70),to_tensor", COLOR[1:]),
    # Exact 2x up/down: many results land on .5, where rounding must agree.
    ("resize(56),to_tensor", GRAY[2:3]),
    ("resize(14),to_tensor", GRAY[:1]),
    ("resize(16,20),to_tensor", COLOR[1:]),
    ("resize(64,80),to_tensor", COLOR[:1]),
    ("to_tensor,center_crop(20)", GRAY[:2]),
    ("to_tensor,center_crop(33)", GRAY[2:3]),
    ("center_crop(24,27),to_tensor", GRAY[3:]),
    ("to_tensor,center_crop(25,35)", COLOR[:1]),
    ("center_crop(40,44),to_tensor", COLOR[1:]),
    ("to_tensor,center_crop(35,21)", COLOR[1:]),
    ("to_tensor,random_horizontal_flip(1)", GRAY[:2] + COLOR[:1]),
    ("random_horizontal_flip(1),to_tensor", COLOR[1:]),
    ("to_tensor,random_horizontal_flip(0)", GRAY[2:3]),
    ("to_tensor,normalize(0.5,0.25),center_crop(20),gaussian_blur(7)", GRAY[3:]),
    ("center_crop(26),random_horizontal_flip(1),resize(20),to_tensor,normalize(0.1307,0.3081),gaussian_blur(5)", GRAY[:1]),
]
# (input, pad, top, left, height, width) with top/left in the padded image.
CROPS = [
    ("gray0", 4, 0, 0, 28, 28),
    ("gray1", 4, 8, 8, 28, 28),
    ("gray2", 4, 3, 6, 28, 28),
    ("color0", 2, 1, 5, 24, 30),
]


def make_inputs():
    rng = np.random.default_rng(SEED)
    imgs = {}
    # Uniform noise: every pixel value, no structure.
    imgs["gray0"] = rng.integers(0, 256, size=(28, 28, 1), dtype=np.uint8)
    # A smooth gradient plus noise.
    yy, xx = np.mgrid[0:28, 0:28]
    grad = (yy * 6 + xx * 3) % 256 + rng.integers(-20, 21, size=(28, 28))
    imgs["gray1"] = np.clip(grad, 0, 255).astype(np.uint8)[:, :, None]
    # MNIST-like: mostly 0, a bright blob and stroke.
    g2 = np.zeros((28, 28), dtype=np.int64)
    g2[6:22, 12:16] = 255
    g2[8:11, 8:20] = 200
    g2 += rng.integers(0, 30, size=(28, 28)) * (rng.random((28, 28)) < 0.1)
    imgs["gray2"] = np.clip(g2, 0, 255).astype(np.uint8)[:, :, None]
    # Extremes: a checkerboard of 0 and 255 with a 255 border.
    g3 = ((yy // 3 + xx // 3) % 2 * 255).astype(np.uint8)
    g3[0, :] = g3[-1, :] = g3[:, 0] = g3[:, -1] = 255
    imgs["gray3"] = g3[:, :, None]
    imgs["color0"] = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:32, 0:40]
    c1 = np.stack([yy * 8, xx * 6, (yy + xx) * 4], axis=-1) + rng.integers(-10, 11, size=(32, 40, 3))
    imgs["color1"] = np.clip(c1, 0, 255).astype(np.uint8)
    return imgs


def to_tensor(hwc):
    t = F.to_tensor(hwc)
    pil = PIL.Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    assert torch.equal(t, F.to_tensor(pil)), "to_tensor from numpy and PIL disagree"
    return t


def parse(spec):
    out = []
    depth, start = 0, 0
    for i, ch in enumerate(spec + ","):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            item = spec[start:i]
            start = i + 1
            name, _, rest = item.partition("(")
            args = [float(a) for a in rest.rstrip(")").split(",")] if rest else []
            out.append((name, args))
    return out


def ints(args):
    return [int(a) for a in args]


def run(spec, hwc):
    """Runs spec through torchvision. Before to_tensor the image is a contiguous
    uint8 CHW tensor, as F.pil_to_tensor and torchvision.io.read_image make it
    (a channels-last view would take torch's channels-last resize kernel, whose
    float rounding differs and can move a uint8 result by 1)."""
    img = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))
    is_float = False
    for name, args in parse(spec):
        if name == "to_tensor":
            assert not is_float
            img = to_tensor(np.ascontiguousarray(img.permute(1, 2, 0).numpy()))
            is_float = True
        elif name == "normalize":
            n = len(args) // 2
            img = T.Normalize(args[:n], args[n:])(img)
        elif name == "gaussian_blur":
            k = int(args[0])
            if len(args) == 1:
                img = F.gaussian_blur(img, [k, k])  # sigma=None: 0.15 k + 0.35
            else:
                img = T.GaussianBlur(k, sigma=args[1])(img)
        elif name == "resize":
            size = ints(args)
            img = F.resize(img.contiguous(), size[0] if len(size) == 1 else size,
                           interpolation=T.InterpolationMode.BILINEAR, antialias=False)
        elif name == "center_crop":
            img = T.CenterCrop(ints(args))(img)
        elif name == "random_horizontal_flip":
            img = T.RandomHorizontalFlip(args[0])(img)
        else:
            raise ValueError(name)
    assert is_float and img.dtype == torch.float32
    return img.contiguous()


def write_array(path, arr):
    arr = np.ascontiguousarray(arr)
    code = {np.dtype(np.uint8): 1, np.dtype(np.float32): 8}[arr.dtype]
    with open(path, "wb") as f:
        f.write(b"DFGT" + struct.pack("<BBxx", code, arr.ndim))
        f.write(struct.pack("<%di" % arr.ndim, *arr.shape))
        f.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "producer", "golden"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for f in os.listdir(out):
        if f.endswith(".bin") or f == "manifest.txt":
            os.remove(os.path.join(out, f))

    imgs = make_inputs()
    for name, arr in imgs.items():
        write_array(os.path.join(out, name + ".bin"), arr)

    lines = []
    for i, (spec, inputs) in enumerate(CASES):
        for inp in inputs:
            res = run(spec, imgs[inp])
            oname = "out%02d_%s" % (i, inp)
            write_array(os.path.join(out, oname + ".bin"), res.numpy())
            lines.append("pipeline %s %s %s" % (inp, oname, spec))
    for i, (inp, pad, top, left, h, w) in enumerate(CROPS):
        t = to_tensor(imgs[inp])
        res = F.crop(F.pad(t, [pad]), top, left, h, w).contiguous()
        oname = "crop%02d_%s" % (i, inp)
        write_array(os.path.join(out, oname + ".bin"), res.numpy())
        lines.append("crop %s %s %d %d %d %d" % (inp, oname, top - pad, left - pad, h, w))

    folder = os.path.join(out, "image_folder")
    for sub in ("cat", "dog"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    PIL.Image.fromarray(imgs["color0"]).save(os.path.join(folder, "cat", "0_rgb.png"))
    PIL.Image.fromarray(imgs["gray2"][:, :, 0]).save(os.path.join(folder, "cat", "1_gray.png"))
    PIL.Image.fromarray(imgs["color1"]).save(os.path.join(folder, "dog", "0.jpg"), quality=95)

    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("# Made by producer/tools/make_goldens.py with torch %s, torchvision %s, numpy %s.\n"
                % (torch.__version__, torchvision.__version__, np.__version__))
        f.write("# Do not edit; rerun the script.\n")
        f.write("\n".join(lines) + "\n")
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    total = sum(os.path.getsize(f) for f in files)
    print("wrote %d cases, %d files, %d bytes to %s" % (len(lines), len(files), total, out))


if __name__ == "__main__":
    main()
