"""Publishes a deterministic torch Dataset through datafeed.Writer (run by
test_writer.py as a separate process, as a data host would).

    writer_child.py ENDPOINT EPOCHS BATCH_SIZE [--insecure]
"""

import sys

import torch

import datafeed

N = 50  # samples: batches of 16 -> 3 full batches and one of 2


class Squares(torch.utils.data.Dataset):
    """Sample i: image[c, h, w] = i * 1000 + c * 100 + h * 10 + w (float32),
    label i % 10 (int64), weight i / 2 (float64)."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        grid = torch.arange(3).view(3, 1, 1) * 100 + torch.arange(4).view(1, 4, 1) * 10 + torch.arange(5)
        return (grid + i * 1000).float(), i % 10, i / 2


def expected(batch_size):
    """The batches the child publishes in one epoch, as dicts."""
    loader = torch.utils.data.DataLoader(Squares(), batch_size=batch_size, shuffle=False)
    return [{"image": x, "label": y, "weight": w.numpy()} for x, y, w in loader]


def main():
    endpoint, epochs, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    insecure = "--insecure" in sys.argv
    with datafeed.Writer(endpoint, insecure=insecure, linger=30.0, timeout=60.0) as w:
        for _ in range(epochs):
            for k, b in enumerate(expected(batch_size)):
                image = b["image"]
                if k % 2:  # the same values, not contiguous: copied in one strided pass
                    image = image.transpose(2, 3).contiguous().transpose(2, 3)
                    assert not image.is_contiguous()
                w.publish(image=image, label=b["label"], weight=b["weight"])
            w.end_epoch()
    print("published", w.batches, w.bytes, flush=True)


if __name__ == "__main__":
    main()
