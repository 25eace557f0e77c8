import json
import os
import socket
import subprocess
import sys

from tensorpoly_tn.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_agree(tmp_path):
    out = tmp_path / "run"
    port = _free_port()
    command = [sys.executable, "-m", "tensorpoly_tn.cli", "train", "--out", str(out), "--method", "poly",
               "--steps", "3", "--batch-size", "4", "--no-progress"]
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2
    assert results["replica_max_abs_difference"] == 0.0
    assert len(results["losses"]) == 3


def test_single_process_train_writes_results(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--steps", "2", "--batch-size", "2", "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["num_processes"] == 1
    assert (tmp_path / "checkpoint.pt").is_file()


def test_train_rejects_unknown_data_source(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"data": {"source": "web"}}))
    assert main(["train", "--config", str(config), "--out", str(tmp_path)]) == 2
    assert "data.source must be one of ('skills', 'p3'), got 'web'" in capsys.readouterr().err
