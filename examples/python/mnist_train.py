#!/usr/bin/env python3
"""The MNIST CNN of the study datafeed grew from, in PyTorch, fed two ways.

  --source dataloader   the baseline: a torchvision-style MNIST dataset read
                        from IDX files, ToTensor -> Normalize -> GaussianBlur(11)
                        in DataLoader worker processes (--workers);
  --source datafeed     batches from a datafeed producer as zero-copy
                        tensors (datafeed.Loader), either one already running
                        at --endpoint / $DATAFEED_ENDPOINT, or one this script
                        starts with datafeed.serve() (--serve).

It first measures the ceiling: the step time with one batch already resident
(on the device), so the trainer never waits. Then it trains --steps steps on
fresh batches and reports step time, samples/s, the share of time spent
waiting for data, and ratio = ceiling_step_s / step_s (1.0: feeding costs
nothing). --json prints one line.

    build/producer/datafeed-make-mnist --out /tmp/mnist
    PYTHONPATH=build/python python3 examples/python/mnist_train.py \\
        --source datafeed --serve --mnist /tmp/mnist --producer-threads 4
    python3 examples/python/mnist_train.py --source dataloader --mnist /tmp/mnist --workers 16

The network and optimizer are PyTorch's examples/mnist (as examples/mnist_train.cc).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BLUR_PIPELINE = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)"
PLAIN_PIPELINE = "to_tensor,normalize(0.1307,0.3081)"


class Net(nn.Module):
    """pytorch/examples mnist/main.py."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


# --- the baseline: torchvision transforms in DataLoader workers --------------


def idx_mnist_dataset(root, split, blur):
    """A torchvision-style MNIST dataset over IDX files (as torchvision's
    MNIST: a PIL 'L' image through the transforms, and an int target)."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    def read(path, offset):
        with open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

    images = read(os.path.join(root, split + "-images-idx3-ubyte"), 16).reshape(-1, 28, 28)
    labels = read(os.path.join(root, split + "-labels-idx1-ubyte"), 8).astype(np.int64)
    steps = [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    if blur:
        steps.append(transforms.GaussianBlur(11))
    transform = transforms.Compose(steps)

    class IdxMNIST(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            img = Image.fromarray(images[i], mode="L")
            return transform(img), int(labels[i])

    return IdxMNIST()


def dataloader_batches(args, device):
    ds = idx_mnist_dataset(args.mnist, args.split, args.blur)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    state = {"loader": loader, "workers": []}

    def gen():
        while True:  # endless, epoch after epoch
            it = iter(loader)
            state["workers"] = [w.pid for w in getattr(it, "_workers", [])]
            for image, label in it:
                yield image, label, None

    return gen(), state


# --- datafeed ------------------------------------------------------------------


def datafeed_batches(args, device):
    import datafeed

    producer = None
    endpoint = args.endpoint
    if args.serve:
        producer = datafeed.serve(
            args.mnist,
            pipeline=args.pipeline,
            batch_size=args.batch_size,
            threads=args.producer_threads,
            endpoint=endpoint,
            epochs=0,
            shuffle=True,
            drop_last=True,
            seed=args.seed,
            slots=args.slots,
        )
        endpoint = producer.endpoint
    elif not endpoint and not os.environ.get("DATAFEED_ENDPOINT"):
        endpoint = "shm://datafeed"  # datafeed-producer's default
    loader = datafeed.Loader(
        endpoint,
        transport=args.transport,
        prefetch=args.prefetch,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        split_epochs=False,
        # A split pipeline's uint8 image goes to a GPU as is (a quarter of the
        # bytes) and is finished there; on the CPU the Loader finishes it.
        finish=device.type == "cpu",
    )

    def gen():
        for batch in loader:
            yield batch["image"], batch["label"], batch.finishes.get("image")

    return gen(), loader, producer


# --- measuring -------------------------------------------------------------------


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def wait_until_idle(pids, max_s=120.0):
    """Waits until the data source's processes stop using CPU (its buffers are
    full), so it does not compete with the ceiling measurement."""
    if not pids:
        return
    start = time.monotonic()
    last = cpu_ticks(pids)
    while time.monotonic() - start < max_s:
        time.sleep(0.5)
        now = cpu_ticks(pids)
        if now - last <= 2:  # < ~4% of a core over 0.5 s
            return
        last = now


class DeviceFeeder:
    """CPU batches -> device. On CUDA: pinned staging and a copy on a side
    stream, so the next batch's copy overlaps the current step's kernels."""

    def __init__(self, device):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, image, label, finish=None):
        if self.stream is None:
            return image, label
        with torch.cuda.stream(self.stream):
            image = image.pin_memory().to(self.device, non_blocking=True)
            label = label.pin_memory().to(self.device, non_blocking=True)
            if finish:  # a split pipeline's uint8 image: finished on the device
                import datafeed

                image = datafeed.finish(image, finish)
        main = torch.cuda.current_stream(self.device)
        main.wait_stream(self.stream)
        image.record_stream(main)
        label.record_stream(main)
        return image, label


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=["dataloader", "datafeed"], required=True)
    p.add_argument("--mnist", help="MNIST IDX directory (default: a synthetic one in a temp dir)")
    p.add_argument("--split", default="train", help="IDX file prefix (train or t10k)")
    p.add_argument("--synthetic", type=int, default=60000,
                   help="samples of the synthetic MNIST made when --mnist is not given")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--no-blur", dest="blur", action="store_false", help="leave GaussianBlur(11) out")
    p.add_argument("--workers", type=int, default=4, help="dataloader: DataLoader worker processes")
    p.add_argument("--endpoint", default=None,
                   help="datafeed: endpoint (default $DATAFEED_ENDPOINT, else shm://datafeed)")
    p.add_argument("--transport", default=None, help="datafeed: force shm|grpc|auto")
    p.add_argument("--serve", action="store_true", help="datafeed: start a producer with datafeed.serve()")
    p.add_argument("--producer-threads", type=int, default=4, help="datafeed --serve: producer threads")
    p.add_argument("--slots", type=int, default=4, help="datafeed --serve: shared-memory slots")
    p.add_argument("--pipeline", default=None,
                   help="datafeed --serve: transform spec (default: the study's, blur per --no-blur)")
    p.add_argument("--producer-pid", type=int, default=0,
                   help="datafeed: pid of an external producer, so the ceiling waits until it is idle")
    p.add_argument("--prefetch", type=int, default=2, help="datafeed: batches read ahead")
    p.add_argument("--timeout", type=float, default=300.0, help="datafeed: fail after this long without a batch")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=20, help="training steps after the ceiling")
    p.add_argument("--ceiling-steps", type=int, default=3, help="steps on one resident batch (0: skip)")
    p.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-every", type=int, default=5, help="progress line every N steps (0: never)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    args = p.parse_args()
    # What the producer runs is known when this script starts it, or says so.
    pipeline_known = args.source == "dataloader" or args.serve or args.pipeline is not None
    producer_threads_known = args.serve or any(a.startswith("--producer-threads") for a in sys.argv)
    if args.pipeline is None:
        args.pipeline = BLUR_PIPELINE if args.blur else PLAIN_PIPELINE

    def log(msg):
        print("mnist_train: " + msg, file=sys.stderr, flush=True)

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    needs_data = args.source == "dataloader" or args.serve
    tmp = None
    if needs_data and not args.mnist:
        import subprocess

        from datafeed.serving import find_tool

        tmp = tempfile.TemporaryDirectory(prefix="mnist-")
        args.mnist = tmp.name
        subprocess.run([find_tool("datafeed-make-mnist"), "--out", args.mnist, "--count",
                        str(args.synthetic)], check=True, stdout=subprocess.DEVNULL)
        log("synthetic MNIST, %d samples, in %s" % (args.synthetic, args.mnist))

    loader = producer = None
    if args.source == "dataloader":
        batches, dl_state = dataloader_batches(args, device)
        source_pids = lambda: dl_state["workers"]  # noqa: E731
    else:
        batches, loader, producer = datafeed_batches(args, device)
        source_pids = lambda: [producer.pid] if producer else ([args.producer_pid] if args.producer_pid else [])  # noqa: E731

    feed = DeviceFeeder(device)
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    model.train()

    def train_step(image, label):
        optimizer.zero_grad()
        output = model(image)
        loss = F.nll_loss(output, label)
        loss.backward()
        optimizer.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # The ceiling: one batch made resident on the device (a copy: it holds no
    # transport memory), one warm-up step, then timed steps.
    image, label, finish = next(batches)
    batch = image.shape[0]
    ceiling_step_s = float("nan")
    if args.ceiling_steps > 0:
        r_image = image.to(device, copy=True)
        if finish:
            import datafeed

            r_image = datafeed.finish(r_image, finish)
        r_label = label.to(device, copy=True)
        del image, label
        train_step(r_image, r_label).item()
        wait_until_idle(source_pids())
        sync()
        t0 = time.perf_counter()
        for _ in range(args.ceiling_steps):
            train_step(r_image, r_label).item()
        sync()
        ceiling_step_s = (time.perf_counter() - t0) / args.ceiling_steps
        log("ceiling (batch resident): %.4f s/step over %d steps" % (ceiling_step_s, args.ceiling_steps))
        del r_image, r_label
    else:
        del image, label

    # Training on fresh batches. The next batch is fetched (and its copy to
    # the device queued) before the loss is read, so on a GPU the fetch
    # overlaps the step's kernels.
    stats0 = loader.stats() if loader else None
    losses = []
    waited = 0.0
    t0 = time.perf_counter()
    t_prev, waited_prev = t0, 0.0
    w = time.perf_counter()
    current = feed(*next(batches))
    waited += time.perf_counter() - w
    step = 0
    while current is not None and step < args.steps:
        loss = train_step(*current)
        current = None  # give the transport memory back before waiting
        step += 1
        if step < args.steps:
            w = time.perf_counter()
            try:
                current = feed(*next(batches))
            except StopIteration:
                log("the stream ended after %d steps" % step)
            waited += time.perf_counter() - w
        losses.append(loss.item())
        if args.log_every > 0 and step % args.log_every == 0:
            now = time.perf_counter()
            dt = now - t_prev
            log("step %d: %.4f s/step, %.0f samples/s, data wait %.1f%%, loss %.4f" % (
                step, dt / args.log_every, batch * args.log_every / dt,
                100.0 * (waited - waited_prev) / dt, losses[-1]))
            t_prev, waited_prev = now, waited
    sync()
    train_s = time.perf_counter() - t0
    stats1 = loader.stats() if loader else None
    transport = loader.transport if loader else None
    endpoint = loader.endpoint if loader else None
    if loader:
        loader.close()
    if producer:
        producer.stop()

    step_s = train_s / step
    k = min(5, len(losses))
    result = {
        "source": args.source,
        "transport": transport,
        "endpoint": endpoint,
        "pipeline": args.pipeline if pipeline_known else None,
        "blur": ("gaussian_blur" in args.pipeline) if pipeline_known else None,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "producer_threads": args.producer_threads if producer_threads_known and args.source == "datafeed" else None,
        "workers": args.workers if args.source == "dataloader" else None,
        "batch": batch,
        "steps": step,
        "step_s": round(step_s, 6),
        "ceiling_step_s": None if ceiling_step_s != ceiling_step_s else round(ceiling_step_s, 6),
        "ratio": None if ceiling_step_s != ceiling_step_s else round(ceiling_step_s / step_s, 4),
        "data_wait_frac": round(waited / train_s, 4),
        "library_wait_frac": None,
        "samples_per_s": round(batch / step_s, 1),
        "loss_first": round(sum(losses[:k]) / k, 4),
        "loss_last": round(sum(losses[-k:]) / k, 4),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if stats0 is not None and stats1 is not None:
        elapsed = stats1["elapsed_s"] - stats0["elapsed_s"]
        if elapsed > 0:
            result["library_wait_frac"] = round((stats1["wait_s"] - stats0["wait_s"]) / elapsed, 4)
    if args.json:
        print(json.dumps(result))
    else:
        print("mnist_train: %s%s, batch %d, %d steps on %s: %.4f s/step, %.0f samples/s, data wait %.1f%%" % (
            args.source, " over " + transport if transport else "", batch, step, device, step_s,
            batch / step_s, 100.0 * result["data_wait_frac"]))
        if result["ratio"] is not None:
            print("  ceiling %.4f s/step   ratio = ceiling_step_s / step_s = %.3f" % (ceiling_step_s,
                                                                                   result["ratio"]))
        print("  loss %.4f (first %d steps) -> %.4f (last %d)" % (result["loss_first"], k,
                                                                result["loss_last"], k))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
