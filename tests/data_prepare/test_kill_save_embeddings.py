"""kill -9 of save_embeddings.py at random moments: nothing ever stands under the final name
unless complete, and a rerun succeeds (clearing what the killed run left)."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from facekd.data.recordio import RecordDataset, RecordDatasetWriter

from prepare_helpers import ROOT

COPIES = 40  # 72 images x 40: a build that lasts a few seconds with the tiny teacher


@pytest.mark.slow
def test_kill_9_of_save_embeddings_never_leaves_a_partial_output(synthetic_dir, teacher, tmp_path):
    data = tmp_path / "in"
    with RecordDataset(str(synthetic_dir)) as src, \
            RecordDatasetWriter(str(data), num_classes=src.num_classes * COPIES, image_size=src.image_size) as dst:
        records = list(src.iter_records())
        for copy in range(COPIES):
            for _, label, payload in records:
                dst.add(float(label[0]) + copy * src.num_classes, payload)
    out = tmp_path / "soft"
    command = [sys.executable, os.path.join(ROOT, "data_prepare", "save_embeddings.py"), "--model", teacher[0],
               "--data-dir", str(data), "--out", str(out), "--batch-size", "8", "--overwrite"]
    start = time.time()
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    duration = time.time() - start
    expected = len(records) * COPIES
    rng = random.Random(1)
    for kill in range(6):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # under the final name: the previous complete output, never a part of the new one
        with RecordDataset(str(out)) as ds:
            assert ds.num_images == expected and ds.layout.kind == "soft", kill
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with RecordDataset(str(out)) as ds:
        assert ds.num_images == expected
    assert sorted(os.listdir(tmp_path)) == ["in", "soft"]  # no OUT.partial or OUT.old-PID left
