import json


from tensorpoly_tn.cli import main


def _write_rte(root):
    folder = root / "t0" / "few_shot" / "rte" / "32_shot"
    folder.mkdir(parents=True)
    for seed in (0, 1):
        rows = [
            {"premise": f"The cat {seed} sat on mat number {i}.", "hypothesis": f"A cat sat on mat {i}.",
             "label": i % 2, "idx": 10 * seed + i}
            for i in range(3)
        ]
        (folder / f"{seed}_seed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bench_eval_paths_agree(tmp_path, capsys):
    _write_rte(tmp_path)
    code = main(["bench", "eval", "--data-dir", str(tmp_path), "--tasks", "rte", "--max-examples", "5",
                 "--repeats", "1", "--batch-size", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "| rte | 5 | 2 |" in printed
    assert "2-choice tasks: total speed-up" in printed
    assert "results identical on every task: yes" in printed


def test_bench_eval_rejects_unknown_task(tmp_path, capsys):
    assert main(["bench", "eval", "--data-dir", str(tmp_path), "--tasks", "mnli"]) == 2
    assert "unknown tasks ['mnli']" in capsys.readouterr().err
