"""Several gRPC streams to one producer from Python: Loader(grpc_streams=N)
(ReaderOptions::grpc_streams). The streams split the producer's batches
(every sample of every epoch exactly once), len() is still one epoch of the
producer, and a checkpoint (one position per stream) restores exactly the
batches after it."""

import json

import pytest

torch = pytest.importorskip("torch")

import datafeed
from conftest import free_port
from test_resume import BATCH, EPOCHS, check_epochs, keys, loader, serve, take

PER_EPOCH = 1000 // BATCH


def test_three_streams_split_the_run_and_their_checkpoint_restores(mnist_dir, tmp_path):
    endpoint = "grpc://127.0.0.1:%d" % free_port()
    with serve(mnist_dir, tmp_path / "state", endpoint) as producer:
        # split_epochs (the default, which len() needs); 7 batches stay in epoch 0.
        first = datafeed.Loader(producer.endpoint, grpc_streams=3, timeout=30, connect_timeout=20)
        assert first.transport == "grpc"
        assert len(first) == PER_EPOCH  # the producer's epoch, not three of them
        before = take(first, 4)
        state = json.loads(json.dumps(first.state_dict()))
        assert len(state["streams"]) == 3, state  # one position per stream
        lost = take(first, 3)
        first.close()

        # Restored with another N it is the same group restore of the
        # positions (tests/transport/multi_test.cc restores 3 onto 3, 2, 1).
        restored = loader(producer.endpoint, grpc_streams=3, state=state)
        after = take(restored)
        restored.close()
    assert set(keys(lost)) <= set(keys(after)), "the steps after the checkpoint did not come again"
    check_epochs(before + after)
    assert len(before + after) == PER_EPOCH * EPOCHS


def test_a_stream_count_out_of_range_is_refused_by_name():
    with pytest.raises(datafeed.InvalidArgument, match="grpc_streams"):
        datafeed.Loader("grpc://127.0.0.1:1", grpc_streams=0)
