"""Reporting: what one run writes, and what aggregates many runs (`python -m jaxprompt.report RUNS_DIR`).

    run_files   one run's files: metrics.jsonl, progress lines, the results schema (`results_record`,
                `write_results`), `method_label` / `method_options`, `harmonic_mean`
    run_tables  one run's results.md table, per run kind (single, multitask, continual, demo)
    event_files TensorBoard event files of scalars, standard library only (`MetricsLog(workdir, tensorboard=True)`)
    evaluation_files  one run's evaluations/<set>.json (per-class accuracy, confusion matrix) and heat maps
    groups      finished runs gathered (`load_results`) and grouped over seeds (`Group`, `aggregate`)
    tables      the report's markdown tables across runs, laid out like the papers'
    plots       accuracy-vs-shots curves, bar plots, the grouping heat map (`affinity_heatmap`)
    published   the papers' numbers, for the "published" columns
    build       report.md / report.json / PNGs from a runs directory (`build_report`, `main`)

Import the module you need (`from jaxprompt.report import run_files`); this package imports none of them, so a
trainer that writes results never loads matplotlib.
"""
