#!/usr/bin/env python3
"""Prints the scalars of the TensorBoard event files in a folder (as `--tensorboard` writes them), one JSON object
per event, read with TensorBoard's own reader (pip install tensorboard), which checks every record's CRC and stops at
the first that fails: {"step": N, "wall_time": T, "tags": {tag: value}}. Used by the tests; handy to check a run."""
import glob
import json
import os
import sys

from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tensorboard_scalars.py FOLDER")
    files = sorted(glob.glob(os.path.join(sys.argv[1], "events.out.tfevents.*")))
    if not files:
        sys.exit(f"{sys.argv[1]}: no events.out.tfevents.* file")
    for path in files:
        for record in event_file_loader.RawEventFileLoader(path).Load():
            event = event_pb2.Event.FromString(record)
            if event.HasField("file_version"):
                print(json.dumps({"file_version": event.file_version, "wall_time": event.wall_time}))
                continue
            tags = {value.tag: value.simple_value for value in event.summary.value}
            print(json.dumps({"step": event.step, "wall_time": event.wall_time, "tags": tags}))


if __name__ == "__main__":
    main()
