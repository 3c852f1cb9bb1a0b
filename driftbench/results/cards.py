"""One metric card per metric: name, unit, direction, horizon, confidence interval, gate tolerance and a
one-line meaning, in one place. Everything that describes a metric reads it from here: the report's glossary
(:mod:`driftbench.report.glossary`), the report's clip table headers
(:data:`driftbench.report.html.TABLE_COLUMNS`),
the regression gate's tracked metrics and tolerances (:data:`driftbench.results.gate.TRACKED`) and
``metrics/README.md`` (generated: ``driftbench dev metrics-readme``; tests/test_cards.py fails when it is
stale).

Adding a per-clip metric: compute its column (:mod:`driftbench.measure.drift` for clips.csv) and add its card
here; list a column in ``gated`` to have the gate track it, in ``columns`` to show it in the report's clip
table. """

from __future__ import annotations

from dataclasses import dataclass

BOOT = "seeded BCa bootstrap over clips, 95%"
BOOT_PAIRS = "seeded BCa bootstrap over pairs, 95%; p: Wilcoxon signed-rank"


@dataclass(frozen=True)
class Gated:
    """A column the regression gate tracks."""

    column: str  #: the clips.csv column
    tolerance: float  #: default tolerance (the gate's --tolerance NAME=VALUE overrides it)
    what: str  #: one line for the gate's report


@dataclass(frozen=True)
class MetricCard:
    name: str  #: the metric, with {T} for a horizon in seconds and {raw,dec} for both scores
    meaning: str  #: one line: what it measures
    unit: str
    direction: str  #: which way is better, in words
    ci: str  #: how its confidence interval is made
    horizon: str  #: when in the clip it is read
    sign: int = 0  #: +1 higher is better, -1 lower is better, 0 neither (for the gate)
    gated: tuple[Gated, ...] = ()  #: the columns the gate tracks
    columns: tuple[tuple[str, str], ...] = ()  #: (clips.csv column, report table header)


HORIZON_T = "T in metrics.horizons (default 5, 30, 60, 120 s): median over [T-2 s, T)"
CARDS: tuple[MetricCard, ...] = (
    MetricCard(
        "sim_dec_at_{T}s",
        "decoupled identity similarity to the reference: median over [T-2 s, T) (raw "
        "similarity adjusted for the expression/pose/age difference to the reference)",
        "cosine similarity",
        "higher is better",
        BOOT,
        HORIZON_T,
        +1,
        (
            Gated("sim_dec_at_30s", 0.02, "mean decoupled similarity at 30 s"),
            Gated("sim_dec_at_60s", 0.02, "mean decoupled similarity at 60 s"),
        ),
        (
            ("sim_dec_at_5s", "sim@5s"),
            ("sim_dec_at_30s", "sim@30s"),
            ("sim_dec_at_60s", "sim@60s"),
            ("sim_dec_at_end", "sim@end"),
        ),
    ),
    MetricCard(
        "sim_raw_at_{T}s",
        "raw cosine similarity of the identity embeddings, median over [T-2 s, T)",
        "cosine similarity",
        "higher is better",
        BOOT,
        HORIZON_T,
        +1,
    ),
    MetricCard(
        "opening_{raw,dec}",
        "median similarity over 2 s after the frames a first-frame reference is built "
        "from ([1, 3 s); [0, 2 s) with reference images): the clip's level, not drift",
        "cosine similarity",
        "higher is better",
        BOOT,
        "the clip's opening 2 s",
        +1,
        (Gated("opening_dec", 0.02, "mean opening similarity (decoupled)"),),
        (("opening_raw", "opening raw"), ("opening_dec", "opening dec")),
    ),
    MetricCard(
        "drift_dec_at_{T}s",
        "opening minus sim@T: how far the face moved away from where it started",
        "cosine similarity",
        "lower is better",
        BOOT,
        HORIZON_T,
        -1,
        (Gated("drift_dec_at_30s", 0.02, "mean drift (opening - sim) at 30 s"),),
        (("drift_dec_at_30s", "drift@30s"), ("drift_dec_at_60s", "drift@60s")),
    ),
    MetricCard(
        "drift_{raw,dec}_at_end",
        "opening minus the median similarity over the clip's last 2 s: the horizon "
        "every clip reaches, whatever its length",
        "cosine similarity",
        "lower is better",
        BOOT,
        "the clip's last 2 s",
        -1,
        (
            Gated("drift_dec_at_end", 0.02, "drift over the clip's last window (decoupled)"),
            Gated("drift_raw_at_end", 0.02, "drift over the clip's last window (raw)"),
        ),
        (("drift_dec_at_end", "drift@end"), ("drift_raw_at_end", "drift raw@end")),
    ),
    MetricCard(
        "min_bin_{raw,dec}",
        "the clip's lowest 1 s bin median (its worst second)",
        "cosine similarity",
        "higher is better",
        BOOT,
        "whole clip (1 s bins)",
        +1,
        (
            Gated("min_bin_dec", 0.03, "lowest 1 s bin of the clip (decoupled)"),
            Gated("min_bin_raw", 0.03, "lowest 1 s bin of the clip (raw)"),
        ),
        (("min_bin_dec", "min bin dec"),),
    ),
    MetricCard(
        "slope_{raw,dec}_per_min",
        "Theil-Sen slope of the 1 s bin medians",
        "cosine / min",
        "closer to 0 (negative = drift)",
        BOOT,
        "whole clip (1 s bins)",
        +1,
        (
            Gated("slope_dec_per_min", 0.03, "Theil-Sen slope per minute (decoupled)"),
            Gated("slope_raw_per_min", 0.03, "Theil-Sen slope per minute (raw)"),
        ),
        (("slope_dec_per_min", "slope /min"),),
    ),
    MetricCard(
        "time_to_loss_s",
        "onset of the first run of >= 2 s in which the smoothed decoupled similarity stays "
        "below the backend's calibrated threshold (FAR 0.1%) or the face is missing (loss_cause identity / "
        "no_face; a "
        "clip without any face is lost at 0); empty = never lost (right-censored)",
        "seconds",
        "later (or never) is better",
        "Kaplan-Meier (scipy.stats.ecdf)",
        "whole clip",
        +1,
        columns=(("time_to_loss_s", "loss at s"),),
    ),
    MetricCard(
        "time_to_drift_s",
        "onset of drift below the loss bar: the first 5 s run in which the opening minus "
        "the trailing 5 s median exceeds the clip's drift_threshold, a calibrated number of units of the "
        "clip's own sample-to-sample noise (floored at real footage's median noise), set so that <= 1% of "
        "held-out identity-constant real clips are flagged; drifting = 0/1; empty = censored",
        "seconds",
        "later (or never) is better",
        "Kaplan-Meier (scipy.stats.ecdf)",
        "whole clip (5 s windows)",
        +1,
        columns=(("time_to_drift_s", "drifting from s"),),
    ),
    MetricCard(
        "longest_no_face_s",
        "longest run of samples without the character's face",
        "seconds",
        "lower is better",
        BOOT,
        "whole clip",
        -1,
        columns=(("longest_no_face_s", "longest no face s"),),
    ),
    MetricCard(
        "survival_at_{T}s",
        "Kaplan-Meier share of clips still the same person at T s; clips that end without "
        "a loss are censored at their duration; empty (not measurable) when no clip was observed to T, even "
        "one lost earlier",
        "share 0-1",
        "higher is better",
        "exponential Greenwood (log-log), 95%",
        "T in metrics.horizons",
        +1,
        (
            Gated("survival_at_30s", 0.05, "share of clips still the same person at 30 s"),
            Gated("survival_at_60s", 0.05, "share of clips still the same person at 60 s"),
        ),
    ),
    MetricCard(
        "median_survival_s",
        "time at which the Kaplan-Meier curve falls to 0.5; 'not reached' when most clips "
        "keep their identity",
        "seconds",
        "higher is better",
        "where the band bounds cross 0.5, 95%",
        "over clips",
        +1,
    ),
    MetricCard(
        "face_rate",
        "share of samples in which the character's face was found; stands beside every identity figure",
        "share 0-1",
        "higher is better",
        BOOT,
        "whole clip",
        +1,
        (Gated("face_rate", 0.02, "share of samples with the character's face"),),
        (("face_rate", "face rate"),),
    ),
    MetricCard(
        "agreement_spearman",
        "recognizer agreement (agreement.csv, runs with agreement.backends / face=[a,b]): Spearman rank "
        "correlation across clips between the primary backend's drift_{raw,dec}_at_{T} and another "
        "backend's on the same clips (decoupled vs that backend's raw score where it has no fitted "
        "decoupler); per clip and backend in agreement_clips.csv",
        "Spearman rho (-1 to 1)",
        "higher = the recognizers rank the clips alike",
        "seeded BCa paired bootstrap over clips, 95%",
        "each drift horizon reached by >= 5 clips, and the clip's end",
        0,
    ),
    MetricCard(
        "agreement_{lost,drifting}",
        "recognizer agreement on a verdict (agreement.csv): share of the clips judged by both backends, "
        "each with its own calibrated threshold, on which the verdict is the same; disagree_clips lists "
        "the others (agreement_clips.csv: <verdict>_agrees per clip)",
        "share 0-1",
        "higher = the recognizers agree",
        "none (a count over the clips)",
        "whole clip",
        0,
    ),
    MetricCard(
        "drift_reduction_{T}s",
        "baseline drift minus mitigation drift at T s on the same (character, prompt, seed)",
        "cosine similarity",
        "higher is better",
        BOOT_PAIRS,
        HORIZON_T,
        +1,
    ),
    MetricCard(
        "survival_gain_s",
        "paired gain in identity-survival time, each pair restricted to its shorter clip",
        "seconds",
        "higher is better",
        BOOT_PAIRS,
        "whole clip (pairs)",
        +1,
    ),
    MetricCard(
        "face_rate_delta",
        "mitigation face rate minus its baseline's; a drop beyond 5 points flags the row",
        "share",
        "higher is better",
        BOOT_PAIRS,
        "whole clip (pairs)",
        +1,
    ),
    MetricCard(
        "expressivity_retained",
        "mean over expression spread/speed, head-pose range/speed, landmark motion and "
        "face-crop change of min(mitigation / paired baseline, 1.5); below the floor (default 0.70) the row "
        "is "
        "flagged",
        "x baseline",
        "higher is better (1 = as lively)",
        BOOT_PAIRS,
        "whole clip (pairs)",
        +1,
    ),
    MetricCard(
        "expressivity_vs_real",
        "the same index against real identity-constant footage measured with the same "
        "backend (driftbench/data/expressivity_reference.json)",
        "x real footage",
        "higher is better",
        BOOT,
        "whole clip",
        +1,
        columns=(("expressivity_vs_real", "expressivity vs real"),),
    ),
    MetricCard(
        "ref_copy",
        "closeness of each frame's face to the reference in pose, expression and pixels (geometric "
        "mean of exp(-pose/5 deg), exp(-expression/0.25), crop correlation); clip median; above the limit "
        "set "
        "by real footage the row is flagged",
        "0-1 (1 = copy)",
        "lower is better",
        BOOT,
        "whole clip",
        -1,
        columns=(("ref_copy", "ref copy"),),
    ),
    # -- several characters per clip (driftbench.measure.cast; columns of cast clips only) --
    MetricCard(
        "cast_{missing_samples,unassigned_faces}",
        "cast clips: samples where no face was assigned to the character (its similarity is NaN there), and "
        "faces in the clip that no character took (bystanders, faces too unlike every reference)",
        "samples / faces",
        "lower is better",
        BOOT,
        "whole clip",
        -1,
    ),
    MetricCard(
        "swap_onset_s",
        "cast clips: onset of the first identity swap with another character (``swap_with``): for at least "
        "2 s the character's face scores higher to the other's reference than to its own while the other's "
        "face scores higher to this one's; empty = no swap (``swapped`` 0/1)",
        "seconds",
        "no swap is better",
        "Kaplan-Meier over clips (censored at the end when no swap)",
        "first run of 2 s",
        0,
    ),
    MetricCard(
        "leakage_{max,end}",
        "cast clips: how much more the character's face resembles another character's (``leak_with``) "
        "reference than its resemblance to its own reference carries: cos(face A, ref B) - "
        "cos(ref A, ref B) * cos(face A, ref A) (0 for the own reference), "
        "samples inside a swap left out, trailing 2 s median; max = highest level held "
        "for 2 s, end = median over the last 2 s; ``leaking`` 0/1 when max exceeds the threshold calibrated "
        "on identity-constant real two-person composites (people held out); empty without a calibration",
        "cosine similarity",
        "lower is better",
        BOOT,
        "whole clip / last 2 s",
        -1,
    ),
    # -- published metrics, as their authors' code computes them, on the run's recogniser
    #    (driftbench/measure/published.py; config published.*; clips.csv published_recognizer names it)
    MetricCard(
        "human_identity",
        "VBench-2.0 Human_Identity: share of frames after frame 0 whose face has cosine >= 0.4 to "
        "frame 0's face; frame 0 must hold exactly one face (else empty); frames with several faces are "
        "skipped, frames with none count as consistent (as VBench's code does); empty under 20 frames (in "
        "samples: the samples 20 frames span); published_frames says whether all frames or the samples "
        "were read, human_identity_frames how many counted",
        "share 0-1",
        "higher is better",
        BOOT,
        "whole clip",
        +1,
    ),
    MetricCard(
        "facesim",
        "FaceSim (OpenS2V/ConsisID): mean over 32 evenly spaced frames (np.linspace over the frame count) "
        "of max(0, cosine) of the frame's largest face to the reference's face (the reference image's; "
        "with a first-frame reference, frame 0's largest face); a frame without a face is "
        "padded 25% grey and searched again, else left out; 0 when no frame has a face. FaceSim-Arc with "
        "antelopev2's ArcFace, here the run's recogniser; facesim_faces: the frames that counted",
        "cosine similarity",
        "higher is better",
        BOOT,
        "whole clip (32 frames)",
        +1,
    ),
    MetricCard(
        "csim{,_5s}",
        "CSIM (talking-head papers): mean cosine of each sampled frame's largest face to the reference's "
        "face, frames without a face left out; csim_5s over the first 5 s only (a 5 s benchmark clip)",
        "cosine similarity",
        "higher is better",
        BOOT,
        "whole clip; first 5 s",
        +1,
    ),
)


def gated() -> dict[str, tuple[MetricCard, Gated]]:
    """Every column the gate tracks -> (its card, its gate entry), in card order."""
    return {g.column: (c, g) for c in CARDS for g in c.gated}


def headers() -> dict[str, str]:
    """clips.csv column -> the report table's header, for every metric column a card shows."""
    return {col: head for c in CARDS for col, head in c.columns}


def readme() -> str:
    """metrics/README.md: the cards as a Markdown table (``driftbench dev metrics-readme`` writes it)."""
    lines = [
        "# Metrics",
        "",
        "Generated from the metric cards in `driftbench/results/cards.py` by `driftbench dev "
        "metrics-readme`; "
        "do not edit by hand (tests/test_cards.py fails when this file is stale).",
        "",
        "Per-clip metrics are columns of a run's `clips.csv` (per-bin curves in `curves.csv`); leaderboard "
        "figures are means over clips with the CI shown. `{T}` is a horizon in seconds (`metrics.horizons`); "
        "`{raw,dec}` stands for both the raw and the decoupled score. Committed baselines that the gate "
        "compares "
        "against are in [baselines/](baselines/README.md).",
        "",
        "| metric | meaning | unit | better | horizon | CI | gate tolerance |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CARDS:
        gate = "; ".join(f"`{g.column}` {g.tolerance:g}" for g in c.gated) or "not gated"
        cells = [f"`{c.name}`", c.meaning, c.unit, c.direction, c.horizon, c.ci, gate]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"
