"""Commands that read a coach folder: `report`, `evaluate`, `predict`, `zoo`. Each takes any
coach folder (a run, a sweep, an autopilot session, a check result) and does the sensible
thing with it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from coach.cli.common import add_device, add_quiet, read_json
from coach.errors import EXIT_OK, UserError
from coach.folders import kind_of
from coach.fmt import sig


def cmd_report(args: argparse.Namespace) -> int:
    kind = kind_of(args.dir)
    if kind == "session":
        from coach.pilot.page import render_session
        from coach.pilot.session import Session
        state = read_json(Path(args.dir) / "state.json")
        print(render_session(Session(Path(args.dir), state["budget"])))
    else:
        from coach.report import render
        print(render(args.dir))
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from coach.evaluate import evaluate_runs, format_table
    from coach.train.loop import pick_device
    from coach.train.run import predictor

    device = str(pick_device(args.device))
    runs, sessions = [], []
    for d in args.runs:
        kind = kind_of(d)
        if kind not in ("run", "session"):
            raise UserError(f"{d}: a {kind} folder holds no model to evaluate; give a run or an autopilot session")
        chosen, run = predictor(d)
        runs.append(run.dir)
        if kind == "session":
            sessions.append((d, chosen, run))
    result = evaluate_runs(runs, tta=args.tta, use_ensemble=args.ensemble, split=args.split, device=device)
    for folder, chosen, run in sessions:  # what the session chose: weights, test-time views, ensemble
        from coach.data import load_data
        from coach.train.predict import scores
        data = load_data(run.config.data)
        part = data.val if args.split == "val" else data.test
        row = scores(chosen.probabilities(part.x, device), part.y)
        result["rows"].append({"name": f"{Path(folder).name} (the autopilot's choice: {chosen.choice.weights} weights)",
                               "tta": chosen.choice.tta, **row, "gain": row["acc"] - result["rows"][0]["acc"]})
    print(format_table(result))
    print(f"saved: {Path(runs[0]) / f'evaluation-{args.split}.json'}")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from coach.predict import predict

    rows = predict(args.model, args.input, args.weights)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['input']}: {r['class']} ({sig(r['probability'])})")
    return EXIT_OK


def cmd_zoo(args: argparse.Namespace) -> int:
    from coach.evaluate import zoo

    rows = zoo(args.roots or None)
    if not rows:
        print("no pretrained runs found (looked in runs/ and COACH_ZOO)")
    for r in rows:
        print(f"{r['dir']}  {r['data']}  {r['model']}  {r['classes']} classes  input {r['input_shape']}  "
              f"best {sig(r['best'])}")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    from coach.data.views import MODES
    r = sub.add_parser("report", help="write report.html for any coach folder (offline page)")
    r.add_argument("dir", metavar="DIR", help="a run, a sweep, an autopilot session or a check result")
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("evaluate", help="accuracy per model and what ensembles, EMA, snapshots and TTA add")
    e.add_argument("runs", nargs="+", metavar="DIR", help="runs or autopilot sessions (the session's choice too)")
    e.add_argument("--tta", default="none", choices=MODES, help="test-time views (shift: 1-D signals only)")
    e.add_argument("--ensemble", action="store_true", help="also average the runs' probabilities")
    e.add_argument("--split", default="val", choices=("val", "test"),
                   help="val (default) or test: the test split is read only when asked")
    add_device(e)
    add_quiet(e)
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="classify an image, a folder of images or an .npz")
    pr.add_argument("model", metavar="DIR", help="a run or an autopilot session")
    pr.add_argument("input", metavar="INPUT")
    pr.add_argument("--weights", choices=("best", "final", "ema"),
                    help="default: best; for an autopilot session, what it chose")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    z = sub.add_parser("zoo", help="list the pretrained runs coach produced on this machine")
    z.add_argument("roots", nargs="*", help="folders to search (default runs/ and COACH_ZOO)")
    z.set_defaults(func=cmd_zoo)
