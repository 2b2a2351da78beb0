from ghostmixnet.train.progress import Progress


def test_progress_plain_lines_when_not_a_terminal():
    lines = []
    progress = Progress(5, "epoch 1/1", lines.append, every=2)
    for step in range(1, 6):
        progress.update(step, loss=1.0)
    assert lines == ["epoch 1/1 step 2/5 loss 1", "epoch 1/1 step 4/5 loss 1", "epoch 1/1 step 5/5 loss 1"]
