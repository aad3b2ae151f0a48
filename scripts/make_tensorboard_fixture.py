#!/usr/bin/env python3
"""TensorBoard event records written by the `tensorboard` package itself, for Refinery's writer to equal.

    make_tensorboard_fixture.py OUT_DIR

Writes OUT_DIR/events.bin through tensorboard.summary.writer.record_writer.RecordWriter: the
version event (wall time 1700000000.25, "brain.Event:2"), then scalar events (event_pb2.Event with
summary_pb2.Summary.Value(tag, simple_value)) at steps 1, 2, 300 and 2**40 with the values listed
in OUT_DIR/events.json, which the Swift test reads to write the same events.
"""
import json
import os
import sys

import tensorboard
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

EVENTS = [
    {"step": 1, "wall_time": 1700000001.5, "scalars": [["train/loss", 2.5], ["train/grad_norm", 0.75], ["train/learning_rate", 0.0002]]},
    {"step": 2, "wall_time": 1700000002.125, "scalars": [["train/loss", 2.25], ["eval/loss", 0.0]]},
    {"step": 300, "wall_time": 1700000300.0, "scalars": [["train/tokens_per_second", 1234.5678]]},
    {"step": 2 ** 40, "wall_time": 1700009999.9, "scalars": [["train/loss", -1e-30]]},
]


def main(out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "events.bin"), "wb") as f:
        writer = RecordWriter(f)
        writer.write(event_pb2.Event(wall_time=1700000000.25, file_version="brain.Event:2").SerializeToString())
        for event in EVENTS:
            values = [summary_pb2.Summary.Value(tag=tag, simple_value=value) for tag, value in event["scalars"]]
            writer.write(event_pb2.Event(wall_time=event["wall_time"], step=event["step"],
                                         summary=summary_pb2.Summary(value=values)).SerializeToString())
        writer.flush()
    with open(os.path.join(out, "events.json"), "w") as f:
        json.dump({"tensorboard": tensorboard.__version__, "version_wall_time": 1700000000.25, "events": EVENTS}, f, indent=1)
        f.write("\n")
    print(f"wrote {out}/events.bin ({os.path.getsize(os.path.join(out, 'events.bin'))} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
