"""Teacher embeddings for every training image: stepwise (vectors file) or streaming (soft dataset).

Streaming, one pass, no intermediate files (recommended):

    python data_prepare/save_embeddings.py --model ./models/r100-arcface-emore/model,1 \\
        --data-dir ../datasets/faces_emore --out ../datasets/faces_emore_soft

Stepwise (step 2, after bin_get_images.py; writes LABELS/embeddings.npy):

    python data_prepare/save_embeddings.py --model ./models/r100-arcface-emore/model,1 \\
        --images ../datasets/emore_work/images --labels ../datasets/emore_work/labels

GPUs come from CUDA_VISIBLE_DEVICES; without GPUs, --cpu-contexts CPU contexts.
See docs/data_preparation.md.
"""
import argparse

from facekd.data import prepare, soft_dataset
from facekd.errors import FaceKDError, run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="teacher checkpoint 'prefix,epoch' (output fc1_output)")
    p.add_argument("--data-dir", help="streaming: input dataset folder (train.rec, train.idx, property)")
    p.add_argument("--out", help="streaming: soft dataset folder to create")
    p.add_argument("--images", help="stepwise: images folder written by bin_get_images.py")
    p.add_argument("--labels", help="stepwise: labels folder written by bin_get_images.py")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass over all devices")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (a soft dataset folder only if this script wrote it)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    streaming, stepwise = (args.data_dir, args.out), (args.images, args.labels)
    if any(streaming) and any(stepwise):
        raise FaceKDError("give either --data-dir/--out (streaming) or --images/--labels (stepwise), not both")
    if any(streaming):
        if not all(streaming):
            raise FaceKDError("streaming needs both --data-dir and --out")
        s = soft_dataset.build_from_checkpoint(args.data_dir, args.out, args.model, args.batch_size,
                                               args.cpu_contexts, args.overwrite)
        print(f"save_embeddings: {s.num_images} images, {s.num_identities} identities, d={s.emb_size} "
              f"-> {s.out_dir} in {s.seconds:.1f} s ({s.num_images / max(s.seconds, 1e-9):.0f} img/s)")
        return
    if not all(stepwise):
        raise FaceKDError("give --data-dir and --out (streaming) or --images and --labels (stepwise)")
    prepare.check_teacher_args(args.model, args.batch_size)
    prepare.check_embeddings_output(args.labels, args.overwrite)
    image_size = prepare.first_image_size(args.images, args.labels)
    embedder = prepare.load_teacher(args.model, args.batch_size, args.cpu_contexts, image_size)
    s = prepare.save_embeddings(embedder, args.images, args.labels, overwrite=args.overwrite)
    print(f"save_embeddings: {s.num_images} images, d={embedder.emb_size} -> {s.path} "
          f"in {s.seconds:.1f} s ({s.num_images / max(s.seconds, 1e-9):.0f} img/s)")


if __name__ == "__main__":
    run_cli(main)
