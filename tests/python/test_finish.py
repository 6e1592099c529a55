"""Split pipelines ('|' in the producer's spec): the producer sends uint8,
the Loader finishes it into exactly the floats an unsplit producer sends,
over shared memory and gRPC, in about a quarter of the bytes."""

import json
import os

import pytest

torch = pytest.importorskip("torch")

import datafeed
from conftest import SOURCE_DIR, free_port, producer_args, run_python, unique_name

SPLIT = "random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)"
UNSPLIT = "random_crop(28,2),to_tensor,normalize(0.1307,0.3081)"
FINISH = "to_tensor,normalize(0.1307,0.3081)"


def endpoint_for(kind):
    if kind == "shm":
        uri = "shm://" + unique_name("finish")
        return uri, uri
    port = free_port()
    return "grpc://127.0.0.1:%d" % port, "grpc://127.0.0.1:%d" % port


def collect(spawn, mnist_dir, kind, pipeline, **loader_kwargs):
    serve_at, open_at = endpoint_for(kind)
    spawn(producer_args(mnist_dir, serve_at, "--seed", "3", pipeline=pipeline))
    with datafeed.Loader(open_at, timeout=20, connect_timeout=20, **loader_kwargs) as loader:
        # clone(): a kept zero-copy tensor would hold its ring slot.
        batches = [dict({k: v.clone() for k, v in b.items()}, finishes=dict(b.finishes)) for b in loader]
        stats = loader.stats()
    return batches, stats


@pytest.mark.parametrize("kind", ["shm", "grpc"])
def test_split_gives_the_unsplit_floats_in_a_quarter_of_the_bytes(mnist_dir, spawn, kind):
    want, want_stats = collect(spawn, mnist_dir, kind, UNSPLIT)
    got, got_stats = collect(spawn, mnist_dir, kind, SPLIT)
    assert len(got) == len(want) == 10
    for g, w in zip(got, want):
        assert g["image"].dtype == torch.float32 and g["image"].shape == w["image"].shape
        assert torch.equal(g["image"], w["image"])  # bit for bit
        assert torch.equal(g["label"], w["label"])
        assert g["finishes"] == {}
    ratio = want_stats["bytes"] / got_stats["bytes"]
    assert ratio > 3.8, ratio


def test_finish_false_keeps_uint8_and_finish_runs_it_anywhere(mnist_dir, spawn):
    want, _ = collect(spawn, mnist_dir, "shm", UNSPLIT)
    got, _ = collect(spawn, mnist_dir, "shm", SPLIT, finish=False)
    for g, w in zip(got, want):
        assert g["image"].dtype == torch.uint8
        assert g["finishes"] == {"image": FINISH}
        assert torch.equal(datafeed.finish(g["image"], FINISH), w["image"])
        # A strided view takes the table-lookup path a GPU tensor takes.
        strided = datafeed.finish(g["image"].transpose(2, 3), FINISH).transpose(2, 3)
        assert torch.equal(strided, w["image"])


def test_finish_refuses_bad_input():
    u8 = torch.zeros((2, 1, 4, 4), dtype=torch.uint8)
    with pytest.raises(datafeed.InvalidArgument, match="gaussian_blur"):
        datafeed.finish(u8, "to_tensor,gaussian_blur(3)")
    with pytest.raises(datafeed.InvalidArgument, match="3 channels"):
        datafeed.finish(u8, "to_tensor,normalize(0.1,0.2,0.3,0.4,0.5,0.6)")
    with pytest.raises(datafeed.InvalidArgument, match="uint8"):
        datafeed.finish(u8.float(), FINISH)
    rgb = torch.arange(256, dtype=torch.uint8).repeat(3, 1).view(1, 3, 16, 16)
    out = datafeed.finish(rgb, "to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    # torchvision on the CPU: ToTensor then Normalize, float32.
    assert torch.equal(out[0], rgb[0].float().div(255).sub(mean).div(std))


def test_example_trains_from_a_split_grpc_producer(mnist_dir):
    example = os.path.join(SOURCE_DIR, "examples", "python", "mnist_train.py")
    args = [example, "--source", "datafeed", "--serve", "--mnist", mnist_dir, "--producer-threads", "1",
            "--endpoint", "grpc://127.0.0.1:%d" % free_port(), "--pipeline", SPLIT,
            "--batch-size", "64", "--steps", "3", "--ceiling-steps", "1", "--log-every", "0", "--json"]
    code = "import runpy, sys; sys.argv = %r; runpy.run_path(%r, run_name='__main__')" % (args, example)
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["transport"] == "grpc" and result["steps"] == 3 and result["pipeline"] == SPLIT
    assert result["ratio"] > 0
