"""python -m client {generate,info,trainer-status,watch,health}: the command-line client."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from client.client import SamplerClient, TrainerClient
from client.errors import GanServiceError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description="Talk to the GAN services.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, default_target: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--target", default=default_target, help="HOST:PORT of the service (%(default)s)")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (%(default)s)")
        return sub

    generate = command("generate", "generate images and write them as PNG", "localhost:50051")
    generate.add_argument("--count", type=int, default=16, help="number of images (%(default)s)")
    generate.add_argument("--seed", type=int, help="latent seed: same seed and version, same images")
    generate.add_argument("--version", type=int, help="a published model version (default: newest)")
    generate.add_argument("--label", help="class-conditional models: a class index or name, e.g. sneaker")
    out = generate.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, help="write one grid PNG here (default grid.png)")
    out.add_argument("--out-dir", type=Path, help="write one PNG per image into this folder")
    info = command("info", "show the served model's metadata as JSON", "localhost:50051")
    info.add_argument("--version", type=int, help="a published model version (default: the served one)")
    command("trainer-status", "show the trainer's progress as JSON", "localhost:50052")
    command("watch", "follow the trainer's progress until training ends", "localhost:50052")
    health = command("health", "exit 0 if the service reports SERVING (gRPC health checking)",
                     "localhost:50051")
    health.add_argument("--service", default="", help="service name to check (default: the server)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        if args.count <= 0:
            raise SystemExit("error: --count must be at least 1")
        with SamplerClient(args.target, args.timeout) as sampler:
            label = int(args.label) if args.label is not None and args.label.isdigit() else args.label
            result = sampler.generate(args.count, seed=args.seed, version=args.version, label=label)
        if args.out_dir:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            for index, data in enumerate(result.encoded):
                (args.out_dir / f"image_{index:04d}.png").write_bytes(data)
            where = f"{len(result.encoded)} PNG files in {args.out_dir}"
        else:
            path = args.out or Path("grid.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            result.grid().save(path)
            where = f"a grid of {len(result.images)} images in {path}"
        print(f"wrote {where} (model version {result.model_version}, seed {result.seed})")
    elif args.command == "info":
        with SamplerClient(args.target, args.timeout) as sampler:
            print(json.dumps(dataclasses.asdict(sampler.info(args.version)), indent=2))
    elif args.command == "trainer-status":
        with TrainerClient(args.target, args.timeout) as trainer:
            print(json.dumps(dataclasses.asdict(trainer.status()), indent=2))
    elif args.command == "watch":
        with TrainerClient(args.target, args.timeout) as trainer:
            for status in trainer.watch():
                print(f"{status.state:9s} step {status.step}/{status.total_steps}  d_loss "
                      f"{status.discriminator_loss:.4f}  g_loss {status.generator_loss:.4f}  "
                      f"{status.images_per_second:.0f} img/s  published {status.last_published_version}",
                      flush=True)
    elif args.command == "health":
        with SamplerClient(args.target, args.timeout) as stub:
            status = stub.health(args.service)
        print(status)
        return 0 if status == "SERVING" else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except GanServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
