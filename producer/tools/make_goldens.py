#!/usr/bin/python3
"""Writes the torchvision parity goldens of datafeed's transforms.

Run with an interpreter that has torch and torchvision (Debian: /usr/bin/python3):

    /usr/bin/python3 producer/tools/make_goldens.py [--out tests/producer/golden]

It builds a fixed set of small uint8 HWC images from a seeded numpy RNG, runs
every case of CASES through torchvision as its default loader would feed it
(a PIL image until ToTensor, a tensor after; to_tensor from numpy checked
against to_tensor from PIL), and writes inputs, outputs and a manifest that
tests/producer/transform_test.cc and image_test.cc replay through datafeed,
requiring max |datafeed - torchvision| <= 1e-5 on floats and reporting the
max and mean difference on uint8 outputs.

File format (<name>.bin, little-endian): b"DFGT", uint8 dtype (1 = uint8,
8 = float32, datafeed's DType numbering), uint8 ndim, 2 zero bytes, ndim int32
dims, then the elements in C order. Inputs are HWC uint8, outputs CHW float32.

manifest.txt, one case per line, fields separated by single spaces:
    pipeline <input> <output> <spec>
    crop <input> <output> <top> <left> <height> <width>
    rrc <input> <output> <top> <left> <height> <width>   (F.resized_crop to the
        output's size; a uint8 input is a PIL image, a float32 one a tensor)
    jitter <input> <output> <o0> <o1> <o2> <o3> <b> <c> <s> <h>   (ColorJitter
        with fixed parameters: the adjustments in order o0..o3 (0 brightness,
        1 contrast, 2 saturation, 3 hue), a factor "-" for one that is off)
    decode <file> <output> <channels>   (PIL's Image.open(file).convert("RGB"),
        "L" for 1 channel: torchvision's default loader; file under decode/)
    file <file> <output> <channels> <spec>   (decode then the pipeline)
It also writes image_folder/, a tiny ImageFolderDataset fixture encoded by PIL:
cat/0_rgb.png (color0, lossless), cat/1_gray.png (gray2, 28x28, mode L) and
dog/0.jpg (color1, quality 95); and decode/, image files of several sizes,
formats and colour modes (JPEG 4:2:0/4:2:2/4:4:4, progressive, gray, CMYK;
PNG RGBA, palette, gray+alpha, 16-bit gray; BMP; PPM).

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
# photo0 (60x80 RGB) and gray4 (50x70) are smooth, photo-like images.
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
    # PIL's antialiased resize on photo-like images: strong and mild
    # downscales, upscales, odd sizes, gray and RGB.
    ("resize(23),to_tensor", ["photo0", "gray4"]),
    ("resize(17,31),to_tensor", ["photo0"]),
    ("resize(56),to_tensor", ["gray4"]),
    ("resize(40),center_crop(32),to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)", ["photo0"]),
]
# (input, top, left, height, width, out_height, out_width): F.resized_crop.
RRC = [
    ("photo0", 5, 7, 40, 50, 24, 24),
    ("photo0", 0, 0, 60, 80, 32, 32),
    ("photo0", 10, 20, 15, 12, 40, 40),
    ("photo0", 1, 2, 57, 33, 17, 23),
    ("gray4", 3, 4, 44, 60, 28, 28),
    ("gray4", 20, 30, 9, 9, 9, 9),
]
RRC_FLOAT = [("photo0", 5, 7, 40, 50, 24, 24), ("gray4", 3, 4, 44, 60, 28, 30)]
# (input, order, brightness, contrast, saturation, hue); None = off.
JITTER = [
    ("photo0", [0, 1, 2, 3], 1.3, 0.7, 1.4, 0.1),
    ("photo0", [3, 2, 1, 0], 0.6, 1.5, 0.0, -0.25),
    ("photo0", [2, 0, 3, 1], None, 1.2, None, 0.5),
    ("photo0", [1, 3, 0, 2], 2.5, 0.0, 0.3, -0.5),
    ("color1", [0, 2, 1, 3], 0.9, 1.1, 1.9, 0.05),
    ("gray4", [1, 0, 2, 3], 1.1, 0.8, 1.3, 0.2),
    ("gray4", [3, 1, 2, 0], 0.5, 1.7, None, None),
]
# (file, channels) under decode/: PIL's decode is the golden.
DECODES = [
    ("rgb420_q90.jpg", 3), ("rgb420_q90.jpg", 1), ("rgb422_q75.jpg", 3), ("rgb444_q95.jpg", 3),
    ("progressive.jpg", 3), ("gray_q85.jpg", 3), ("gray_q85.jpg", 1), ("cmyk.jpg", 3),
    ("rgba.png", 3), ("rgba.png", 1), ("palette.png", 3), ("gray_alpha.png", 3),
    ("gray16.png", 1), ("gray16.png", 3), ("rgb.bmp", 3), ("rgb.ppm", 3),
]
# (file, channels, spec): decode, then the pipeline.
FILE_PIPELINES = [
    ("rgb420_q90.jpg", 3, "resize(40),center_crop(32),to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)"),
    ("gray_q85.jpg", 1, "resize(24,20),to_tensor"),
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
    # Photo-like: smooth shapes with edges and mild noise (what JPEG and the
    # antialiased resize see in practice).
    yy, xx = np.mgrid[0:60, 0:80]
    disc = ((yy - 25) ** 2 + (xx - 45) ** 2 < 300) * 120
    p0 = np.stack([yy * 3 + disc, 200 - xx * 2 + disc // 2, (yy + xx) * 2], axis=-1)
    imgs["photo0"] = np.clip(p0 + rng.integers(-12, 13, size=(60, 80, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:50, 0:70]
    g4 = 128 + 100 * np.sin(xx / 6.0) * np.cos(yy / 9.0) + ((xx // 10 + yy // 10) % 2) * 20
    imgs["gray4"] = np.clip(g4 + rng.integers(-8, 9, size=(50, 70)), 0, 255).astype(np.uint8)[:, :, None]
    return imgs


def pil_of(hwc):
    return PIL.Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)


def hwc_of(pil):
    a = np.array(pil)
    return a[:, :, None] if a.ndim == 2 else a


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
    """Runs spec through torchvision the way its default loader feeds it:
    a PIL image ("L" or "RGB") until to_tensor, a float32 tensor after."""
    img = pil_of(hwc)
    is_float = False
    for name, args in parse(spec):
        if name == "to_tensor":
            assert not is_float
            img = to_tensor(hwc_of(img))
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
            size = size[0] if len(size) == 1 else size
            if is_float:
                # A tensor: bilinear without antialiasing (torchvision 0.14's default).
                img = F.resize(img.contiguous(), size, interpolation=T.InterpolationMode.BILINEAR,
                               antialias=False)
            else:
                # A PIL image: PIL's antialiased bilinear resize.
                img = F.resize(img, size, interpolation=T.InterpolationMode.BILINEAR)
        elif name == "center_crop":
            img = T.CenterCrop(ints(args))(img)
        elif name == "random_horizontal_flip":
            img = T.RandomHorizontalFlip(args[0])(img)
        else:
            raise ValueError(name)
    assert is_float and img.dtype == torch.float32
    return img.contiguous()


def jitter(pil, order, factors):
    fns = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    for k in order:
        if factors[k] is not None:
            pil = fns[k](pil, factors[k])
    return pil


def write_decode_files(folder, imgs):
    """Image files for decoding parity, written by PIL."""
    os.makedirs(folder, exist_ok=True)
    photo = imgs["photo0"]
    odd = np.ascontiguousarray(photo[:47, :33])
    PIL.Image.fromarray(photo[:37, :53]).save(os.path.join(folder, "rgb420_q90.jpg"), quality=90)
    PIL.Image.fromarray(odd).save(os.path.join(folder, "rgb422_q75.jpg"), quality=75, subsampling=1)
    PIL.Image.fromarray(photo[:31, :40]).save(os.path.join(folder, "rgb444_q95.jpg"), quality=95,
                                              subsampling=0)
    PIL.Image.fromarray(photo[:48, :64]).save(os.path.join(folder, "progressive.jpg"), quality=85,
                                              progressive=True)
    PIL.Image.fromarray(imgs["gray4"][:29, :41, 0]).save(os.path.join(folder, "gray_q85.jpg"), quality=85)
    PIL.Image.fromarray(photo[:24, :32]).convert("CMYK").save(os.path.join(folder, "cmyk.jpg"), quality=90)
    alpha = (np.arange(20 * 30).reshape(20, 30) * 7 % 256).astype(np.uint8)
    rgba = np.dstack([photo[:20, :30], alpha])
    PIL.Image.fromarray(rgba, "RGBA").save(os.path.join(folder, "rgba.png"))
    PIL.Image.fromarray(photo[:25, :35]).quantize(colors=37).save(os.path.join(folder, "palette.png"))
    la_alpha = (np.arange(21 * 19).reshape(21, 19) * 11 % 256).astype(np.uint8)
    la = np.dstack([imgs["gray4"][:21, :19, 0], la_alpha])
    PIL.Image.fromarray(la, "LA").save(os.path.join(folder, "gray_alpha.png"))
    g16 = (imgs["gray4"][:16, :24, 0].astype(np.uint16) * 3)  # values above 255 too
    PIL.Image.fromarray(g16, "I;16").save(os.path.join(folder, "gray16.png"))
    PIL.Image.fromarray(photo[:13, :17]).save(os.path.join(folder, "rgb.bmp"))
    PIL.Image.fromarray(photo[:11, :15]).save(os.path.join(folder, "rgb.ppm"))


def load_like_torchvision(path, channels):
    with open(path, "rb") as f:
        img = PIL.Image.open(f)
        return img.convert("L" if channels == 1 else "RGB")


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
    for i, (inp, top, left, h, w, oh, ow) in enumerate(RRC):
        res = hwc_of(F.resized_crop(pil_of(imgs[inp]), top, left, h, w, [oh, ow]))
        oname = "rrc%02d_%s" % (i, inp)
        write_array(os.path.join(out, oname + ".bin"), res)
        lines.append("rrc %s %s %d %d %d %d" % (inp, oname, top, left, h, w))
    for i, (inp, top, left, h, w, oh, ow) in enumerate(RRC_FLOAT):
        res = F.resized_crop(to_tensor(imgs[inp]), top, left, h, w, [oh, ow], antialias=False)
        oname = "rrcf%02d_%s" % (i, inp)
        write_array(os.path.join(out, oname + ".bin"), res.contiguous().numpy())
        lines.append("rrc %s %s %d %d %d %d" % (inp, oname, top, left, h, w))
    for i, (inp, order, b, c, sat, hue) in enumerate(JITTER):
        res = hwc_of(jitter(pil_of(imgs[inp]), order, [b, c, sat, hue]))
        oname = "jitter%02d_%s" % (i, inp)
        write_array(os.path.join(out, oname + ".bin"), res)
        text = " ".join("-" if v is None else repr(float(v)) for v in (b, c, sat, hue))
        lines.append("jitter %s %s %s %s" % (inp, oname, " ".join(map(str, order)), text))
    decode_dir = os.path.join(out, "decode")
    write_decode_files(decode_dir, imgs)
    for i, (name, ch) in enumerate(DECODES):
        res = hwc_of(load_like_torchvision(os.path.join(decode_dir, name), ch))
        oname = "decode%02d" % i
        write_array(os.path.join(out, oname + ".bin"), res)
        lines.append("decode %s %s %d" % (name, oname, ch))
    for i, (name, ch, spec) in enumerate(FILE_PIPELINES):
        res = run(spec, hwc_of(load_like_torchvision(os.path.join(decode_dir, name), ch)))
        oname = "file%02d" % i
        write_array(os.path.join(out, oname + ".bin"), res.numpy())
        lines.append("file %s %s %d %s" % (name, oname, ch, spec))
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
