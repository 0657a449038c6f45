# python -m jaxfair.generate --config=configs/demo.py
"""Default config of the main job: a balanced dataset from the shipped demo world.

checkpoints/demo holds a small StyleGAN2 trained on a procedural, deliberately biased face
world (skin tone 75/18/7 %, hair short/long 70/30 %) and a classifier of its attributes
(see docs/demo.md). This config makes 50 identities for every tone x hair group
(6 groups, the rarest ~2 % of unguided samples) with the fused search (``c.search``), in
work units of 10 identities, 6 units per compiled step.

Variants: ``:smoke`` (2 identities per group, small populations), ``:variations`` (3
extra images per identity along the demo's fitted W directions,
checkpoints/demo/directions.npz), ``:paper`` (the paper's 45 moves per identity along
checkpoints/demo/latent_directions.pkl), ``:rare`` (the rarer world of the planner's
crossover: tone x hair x glasses, 12 groups at threshold 0.9; docs/results.md).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # --- models: what judges and what draws (paths relative to the working directory)
    c.generator = "checkpoints/demo/generator"
    c.classifier = "checkpoints/demo/classifier"
    c.truncation_psi = 1.0  # psi of z -> w (1 = none; the demo generator is trained without)
    c.noise_mode = "const"  # const or none (random noise would make datasets irreproducible)
    c.seed = 0  # root of every key stream (jaxfair.keys): the same seed, the same prior

    # --- the one acceptance threshold and the one identity radius (every command)
    # Target-class probability (0-1) an image needs on every constrained attribute: to enter
    # the dataset, to be accepted by a search (python -m jaxfair.search, the lab). 0.999,
    # not 0.9: the demo generator's class boundaries are soft, and a search that walks into
    # a group from a neighbouring one stops at its edge; at 0.9, 7 % of the default dataset
    # had another ground-truth group (docs/results.md).
    c.threshold = 0.999
    # Two latents are one identity at or below this distance (jaxfair.identity: rms of the
    # difference in prior units, i.e. w_std of W, or z on its sphere; two independent prior
    # samples are ~1.41 apart). Search archives, across units, distribution draws.
    c.identity_radius = 0.05

    # --- dataset: python -m jaxfair.generate (groups x identities_per_group)
    # How identities are found: planner (shared prior stream + gated sampling of rare groups,
    # c.planner), search (the fused evolutionary search, c.search) or distribution.
    c.method = "planner"
    c.workdir = "out/demo"
    c.attributes = ("tone", "hair")  # groups: every combination of their classes
    c.identities_per_group = 50  # exact quota of distinct identities per group
    c.identities_per_unit = 10  # work unit = (group, index): this many identities
    c.units_per_step = 6  # units computed together in one compiled search
    c.searches_per_unit = 2  # fused searches per unit (population c.search.population_size)
    c.variations = 0  # extra images per identity along the directions
    c.variation_tries = 3  # candidates per requested variation before giving up
    c.directions = ""  # .npz of named W directions (python -m jaxfair.directions), or with
    # variation_recipe 'paper' a Colbois latent_directions.pkl (or .npz: sweeps)
    c.variation_recipe = "random"  # random: c.variations mixes of c.directions; paper: the
    # paper's 45 moves per identity (jaxfair/pipeline/recipe.py; c.variations is ignored)
    c.keep_outside_group = False  # paper recipe: keep moved faces classified outside the
    # identity's group (their records say in_group false) instead of dropping them
    c.crop = "none"  # images written: none (full frame) or arcface112 (insightface crop)
    c.output_format = ""  # also export DIR/export-<format> after the run (docs/datasets.md)
    c.render_batch = 64  # images per full-resolution render + re-classification batch
    # Memory budget of one batched step in GiB; 0: half the device's memory (CPU: 0.4 of the
    # host's RAM, MemTotal). See jaxfair.judge.sizing and generate --dry_run.
    c.memory_budget_gb = 0.0
    c.image_format = "png"  # png, jpg or none (latents and records only)
    c.latent_dtype = "float32"  # latents.npy: float32 or float16 (half the size, lossy)
    c.writer_threads = 2  # image encoding and shard writing, off the compute thread
    c.imagefolder = False  # also write DIR/imagefolder/<group>/<identity>/<k>.<ext>

    # --- planner: the default method (jaxfair.sampling.planner, docs/planner.md)
    c.planner = ml_collections.ConfigDict(dict(
        stream_batch=256,  # prior samples per compiled stream step
        stream_batches=1,  # stream steps per round (the planner decides again after each)
        # Most gated proposals (prior samples inside a rare group's gate) judged per round,
        # every guided group in one call; 0: binned rejection sampling only.
        guided_batch=256,
        # Room of each gate beyond the farthest stream sample passing its attribute, in
        # standard deviations of the gate's score (0-10; docs/planner.md#gates).
        gate_margin=0.5,
        # Stream samples that must pass each attribute a group constrains before its gate
        # is fitted and the group may leave the stream (>= 2).
        gate_min_samples=50,
        max_evaluations_per_identity=500,  # budget: this x quota x groups evaluations
        fit_samples=8192,  # stream samples kept to fit the gates
        # Pixels: judge an earlier synthesis block's skip image (a block resolution of the
        # generator; the blocks above it are skipped), 0: the full image. Accepted faces are
        # rendered and judged again at full resolution (manifest: score_disagreements).
        score_resolution=0,
    ))

    # --- search: the fused search engine (generate, python -m jaxfair.search)
    c.search = ml_collections.ConfigDict(dict(
        target="tone=dark,hair=long",  # python -m jaxfair.search --target default (rarest)
        strategy="Sep_CMA_ES",  # see jaxfair.search.STRATEGIES; branching, rejection
        space="z",  # z, w or wplus
        population_size=16,  # candidates per search and generation (P)
        num_searches=8,  # searches evaluated together (S), sharded over devices
        generations_per_chunk=10,  # generations per compiled call (T)
        max_generations=200,  # budget in generations; then the best probabilities are reported
        num_accepted=64,  # search job: stop once this many distinct accepted latents
        accept_mode="threshold",  # or argmax (the original method's rule)
        prior_weight=0.1,  # weight (unitless) of the keep-in-distribution term of the loss
        novelty_weight=0.0,  # weight (unitless) of the push-away-from-the-archive term
        novelty_radius=0.3,  # its length scale (rms latent distance, prior units)
        sigma_init=0.5,  # initial step size of the evosax strategies (prior units)
        learning_rate=0.05,  # Open_ES (Adam step size)
        archive_capacity=64,  # accepted latents kept per search
        score_resolution=0,  # pixels: 0 classifies full images; else an earlier block's skip
        feature_radius=0.0,  # > 0: also one identity when classifier features are this
        # close (chord distance of unit-normalised features, 0-2)
        dtype="float32",  # search compute: float32 or bfloat16 (accelerators; slower on CPU)
        eval_batch=0,  # candidates per score micro-batch (0: the whole S x P batch at once)
        seed=0,  # the search job's key root (python -m jaxfair.search)
    ))

    # --- distribution: python -m jaxfair.sample fit|draw (and the lab's hybrid, evaluate)
    c.distribution = ml_collections.ConfigDict(dict(
        workdir="out/distribution",  # default --workdir: the fitted model (fit writes it)
        attributes=("tone", "hair"),  # a mixture (and a head class) per combination
        extra_groups=("tone=dark",),  # more targets to model, e.g. one attribute alone
        num_samples=20_000,  # latents w labelled by the classifier
        batch_size=256,  # latents per labelling and drawing batch
        # Labelling threshold of the fit (0.5-1): the group mass a labelled w needs to join
        # a group's training set; draws --verify keep samples that meet the fit's value.
        threshold=0.9,
        min_group_samples=64,  # fewer members after labelling: error
        truncation_psi=1.0,  # W as published (no truncation)
        noise_mode="const",
        hidden=(48, 32, 16),  # encoder widths: 512-256-128-64-32 scaled to w_dim 64
        code_dim=8,  # autoencoder code width
        output_activation="linear",  # published: leaky_relu (bad on standardised W)
        separation_weight=1.0,  # weight (unitless) of the group head's cross-entropy
        ae_steps=3000,  # autoencoder training steps
        ae_batch_size=256,
        learning_rate=3e-3,  # Adam, cosine decay
        holdout=1024,  # labelled samples kept out of training for reconstruction errors
        num_components=4,  # K per group
        covariance="diag",  # of each component: diag (published) or full
        em_steps=200,
        reg_covar=1e-3,  # added to every variance, code units^2 (ReLU codes: some are 0)
        counts="tone=dark,hair=long:64",  # default --counts of draw
        max_draw_factor=50,  # --verify gives up after this many draws per requested sample
        image_format="png",
        seed=0,  # fit and draw key root
        # lab hybrid and evaluate: 'target;target' ('' = every combination of attributes)
        groups="",
        hybrid_generations=40,  # lab hybrid: generations after the initial batch, both arms
        eval_samples=512,  # lab evaluate: draws per group (unverified; and kept, verified)
    ))

    # --- report: python -m jaxfair.report audit|dataset
    c.report = ml_collections.ConfigDict(dict(
        audit_dir="out/audit",  # default --out of audit
        num=5000,  # audit: unguided samples (default --num)
        batch_size=250,  # audit draws; dataset re-classification batch (images)
        seed=0,  # audit draws (the labels stream of this seed); report subsets
        sample_per_group=64,  # dataset: identity images decoded and classified again
        sheet_size=32,  # contact sheet: identities per group
        sheet_cols=8,
        thumb_size=128,  # contact sheet tile side, pixels (larger images are downscaled)
        diversity_max=1000,  # at most this many identities per group in distance figures
        # Descriptive only (the dataset already holds no two identities within
        # identity_radius): pairs closer than this fraction of the group's mean pairwise
        # distance are counted as near-copies in the report's diversity figures.
        near_duplicate_fraction=0.05,
        # dataset: each group against an unguided sample of it (jaxfair.report.reference):
        # up to this many identities per group compared with as many prior samples the
        # dataset's own rule put in the group (0: no check; else >= 3)
        reference_size=64,
        reference_budget=20_000,  # at most this many prior samples rendered and judged
        reference_permutations=200,  # random splits for the noise floor (>= 19)
    ))
    if arg == "smoke":
        c.identities_per_group = 2
        c.identities_per_unit = 1
        c.searches_per_unit = 1
        c.search.population_size = 8
        c.search.generations_per_chunk = 5
        c.planner.stream_batch = 64
        c.planner.guided_batch = 64
        c.planner.gate_min_samples = 2  # so that a 2-identity run reaches its gates too
    elif arg == "variations":
        c.variations = 3
        c.directions = "checkpoints/demo/directions.npz"
    elif arg == "paper":
        c.variation_recipe = "paper"
        c.directions = "checkpoints/demo/latent_directions.pkl"
    elif arg == "rare":
        c.attributes = ("tone", "hair", "glasses")
        # Measured yields (6,656 prior samples): the rarest group, dark, long hair, glasses,
        # holds 0 of them at 0.999 (the classifier is rarely that sure of glasses), 0.06 %
        # at 0.99 and 0.17 % at 0.9 (the commonest, light, short, none: 41 %). 0.9 keeps a
        # balanced 12-group dataset within reach of a CPU.
        c.threshold = 0.9
        c.workdir = "out/demo_rare"
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use smoke, variations, paper or rare")
    return c
