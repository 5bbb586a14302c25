"""python -m client {generate,info,versions,interpolate,trainer-status,watch,checkpoint-now,stop,
set-publish-interval,health}: the command-line client."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from client.client import Credentials, SamplerClient, TrainerClient, VersionInfo
from client.errors import GanServiceError
from gan_common.config_cli import ConfigError
from gan_common.security import read_token


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description="Talk to the GAN services.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, default_target: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--target", default=default_target, help="HOST:PORT of the service (%(default)s)")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (%(default)s)")
        sub.add_argument("--retries", type=int, default=0, help="retry calls that find the service unavailable "
                                                                 "(0-4, %(default)s)")
        secured = sub.add_argument_group("TLS and tokens (also GAN_CLIENT_TLS_CA, GAN_CLIENT_TLS_CERT, "
                                         "GAN_CLIENT_TLS_KEY, GAN_CLIENT_TOKEN_FILE)")
        secured.add_argument("--tls-ca", default=os.environ.get("GAN_CLIENT_TLS_CA", ""),
                             help="CA certificate of the service: connect with TLS")
        secured.add_argument("--tls-cert", default=os.environ.get("GAN_CLIENT_TLS_CERT", ""),
                             help="our certificate, for mutual TLS (with --tls-key)")
        secured.add_argument("--tls-key", default=os.environ.get("GAN_CLIENT_TLS_KEY", ""),
                             help="the key of --tls-cert")
        secured.add_argument("--token-file", default=os.environ.get("GAN_CLIENT_TOKEN_FILE", ""),
                             help="file holding the bearer token the service expects")
        return sub

    generate = command("generate", "generate images and write them as PNG", "localhost:50051")
    generate.add_argument("--count", type=int, default=16, help="number of images (%(default)s)")
    generate.add_argument("--seed", type=int, help="latent seed: same seed and version, same images")
    generate.add_argument("--version", type=int, help="a published model version (default: newest)")
    generate.add_argument("--label", help="class-conditional models: a class index or name, e.g. sneaker")
    out = generate.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, help="write one grid PNG here (default grid.png)")
    out.add_argument("--out-dir", type=Path, help="write one PNG per image into this folder")
    info = command("info", "show the served model's metadata (scores included) as JSON", "localhost:50051")
    info.add_argument("--version", type=int, help="a published model version (default: the served one)")
    command("versions", "list the published versions: state in the sampler, step, scores", "localhost:50051")
    walk = command("interpolate", "write a grid of images walking from one seed to another", "localhost:50051")
    walk.add_argument("--from", dest="seed_from", type=int, required=True, help="seed of the first image")
    walk.add_argument("--to", dest="seed_to", type=int, required=True, help="seed of the last image")
    walk.add_argument("--steps", type=int, default=8, help="images, both ends included (%(default)s)")
    walk.add_argument("--linear", action="store_true", help="straight line instead of slerp")
    walk.add_argument("--version", type=int, help="a published model version (default: newest)")
    walk.add_argument("--label", help="class-conditional models: a class index or name")
    walk.add_argument("--out", type=Path, default=Path("interpolation.png"), help="grid PNG (%(default)s)")
    command("trainer-status", "show the trainer's progress as JSON", "localhost:50052")
    command("watch", "follow the trainer's progress until training ends", "localhost:50052")
    command("checkpoint-now", "make the trainer checkpoint and publish its current step", "localhost:50052")
    stop = command("stop", "stop the trainer gracefully: checkpoint, publish, exit 0", "localhost:50052")
    stop.add_argument("--wait", action="store_true", help="answer after the final publish, with its version")
    interval = command("set-publish-interval", "change how often the running trainer publishes",
                       "localhost:50052")
    interval.add_argument("steps", type=int, help="publish every N steps")
    health = command("health", "exit 0 if the service reports SERVING (gRPC health checking)",
                     "localhost:50051")
    health.add_argument("--service", default="", help="service name to check (default: the server)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        if args.count <= 0:
            raise SystemExit("error: --count must be at least 1")
        label = _label(args.label)
        if args.out_dir:  # streamed: any count, each file written as its image arrives
            args.out_dir.mkdir(parents=True, exist_ok=True)
            with SamplerClient(args.target, args.timeout, *_connection(args)) as sampler:
                for result in sampler.generate_stream(args.count, seed=args.seed, version=args.version, label=label):
                    for index, data in enumerate(result.encoded, result.first_index):
                        (args.out_dir / f"image_{index:04d}.png").write_bytes(data)
            print(f"wrote {args.count} PNG files in {args.out_dir} (model version {result.model_version}, "
                  f"seed {result.seed})")
            return 0
        with SamplerClient(args.target, args.timeout, *_connection(args)) as sampler:
            result = sampler.generate(args.count, seed=args.seed, version=args.version, label=label)
        path = args.out or Path("grid.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        result.grid().save(path)
        print(f"wrote a grid of {len(result.images)} images in {path} (model version {result.model_version}, "
              f"seed {result.seed})")
    elif args.command == "info":
        with SamplerClient(args.target, args.timeout, *_connection(args)) as sampler:
            print(json.dumps(dataclasses.asdict(sampler.info(args.version)), indent=2))
    elif args.command == "versions":
        with SamplerClient(args.target, args.timeout, *_connection(args)) as sampler:
            print(_versions_table(sampler.versions()))
    elif args.command == "interpolate":
        with SamplerClient(args.target, args.timeout, *_connection(args)) as sampler:
            result = sampler.interpolate(args.seed_from, args.seed_to, args.steps, version=args.version,
                                         spherical=not args.linear, label=_label(args.label))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result.grid().save(args.out)
        print(f"wrote {len(result.images)} images from seed {args.seed_from} to {args.seed_to} in {args.out} "
              f"(model version {result.model_version})")
    elif args.command == "trainer-status":
        with TrainerClient(args.target, args.timeout, *_connection(args)) as trainer:
            print(json.dumps(dataclasses.asdict(trainer.status()), indent=2))
    elif args.command == "watch":
        with TrainerClient(args.target, args.timeout, *_connection(args)) as trainer:
            for status in trainer.watch():
                print(f"{status.state:9s} step {status.step}/{status.total_steps}  d_loss "
                      f"{status.discriminator_loss:.4f}  g_loss {status.generator_loss:.4f}  "
                      f"{status.images_per_second:.0f} img/s  published {status.last_published_version}",
                      flush=True)
    elif args.command == "checkpoint-now":
        with TrainerClient(args.target, args.timeout, *_connection(args)) as trainer:
            done = trainer.checkpoint_now()
        print(f"checkpointed step {done.step}, published version {done.model_version}")
    elif args.command == "stop":
        with TrainerClient(args.target, args.timeout, *_connection(args)) as trainer:
            done = trainer.stop(wait=args.wait)
        print(f"stopped at step {done.step}, published version {done.model_version}" if args.wait
              else f"stopping (step {done.step} when asked)")
    elif args.command == "set-publish-interval":
        with TrainerClient(args.target, args.timeout, *_connection(args)) as trainer:
            previous = trainer.set_publish_interval(args.steps)
        print(f"publishing every {args.steps} steps (was {previous})")
    elif args.command == "health":
        with SamplerClient(args.target, args.timeout, *_connection(args)) as stub:
            status = stub.health(args.service)
        print(status)
        return 0 if status == "SERVING" else 1
    return 0


def _connection(args: argparse.Namespace) -> tuple[Credentials, int]:
    if not 0 <= args.retries <= 4:
        raise ConfigError(f"--retries must be 0..4, not {args.retries}")
    token = read_token(args.token_file) if args.token_file else ""
    return Credentials(args.tls_ca, args.tls_cert, args.tls_key, token), args.retries


def _label(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def _versions_table(versions: list[VersionInfo]) -> str:
    rows = [("version", "state", "step", "published", "scores")]
    for v in versions:
        state = v.state + (" *serving" if v.serving else "") + (f" ({v.in_flight_requests} in flight)"
                                                                 if v.in_flight_requests else "")
        scores = " ".join(f"{name}={value:.4g}" for name, value in sorted(v.scores.items())) or "-"
        rows.append((str(v.model_version), state, str(v.training_step), v.published_at or "-",
                     scores + (f"  error: {v.error}" if v.error else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4]
                     for row in rows) if versions else "no published versions"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (GanServiceError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
