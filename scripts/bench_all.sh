#!/bin/bash
# Rerun the benchmarks with the models and settings of the committed results, one after another
# (about 2 hours on a 2-core machine), then regenerate docs/results.md and the README's results lines:
# the default model (nanodet_g) on the onboard cost, the fleet and the held-out clips, the synthetic model
# where a benchmark scores against ground truth. Run after replacing a model; each
# benchmark's output is logged to runs/bench_all/<name>.log. Needs `make ros` (the venv with ROS), the
# onboard venv (`make onboard`), the footage (`make footage`) and the synthetic held-out sets
# (docs/training.md: make-dataset val, val_hard and fit).
set -u
cd "$(dirname "$0")/.."
sp=.venv/bin/split-perception
mkdir -p runs/bench_all
failed=0
run() {
  local name=$1; shift
  echo "$(date +%T) $name"
  "$sp" bench "$@" > "runs/bench_all/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "  $name failed (exit $rc): runs/bench_all/$name.log"; failed=1; fi
}
ra="--threads 1 --fit-data data/synthetic/fit --max-images 0 --fit-images 100"
run rate_accuracy rate-accuracy --model synthetic --out results/bench/rate_accuracy --data data/synthetic/val $ra &
run rate_accuracy_hard rate-accuracy --model synthetic --out results/bench/rate_accuracy_hard --data data/synthetic/val_hard $ra
wait
run rate_accuracy_real rate-accuracy --model nanodet_g --out results/bench/rate_accuracy_real --threads 2 \
  --footage data/footage/heldout/clips --frame-stride 10 --fit-data data/footage/train --max-images 0 --fit-images 100
run rate_accuracy_video rate-accuracy --model nanodet_g --out results/bench/rate_accuracy_video --threads 1 --video \
  --footage data/footage/heldout/clips --frame-stride 5 --fit-data data/footage/train --max-images 15 --fit-images 100
run temporal temporal --model nanodet_g --out results/bench/temporal --threads 1 --footage data/footage/heldout/clips --fps 10.0 \
  --max-frames 40 --lag 3 --loss 0.1 --seed 0
run loss loss --model nanodet_g --out results/bench/loss --threads 2 --footage data/footage/heldout/clips --fps 10.0 \
  --max-frames 300 --loss 0.01,0.05 --lag 3 --gop 15 --agree-f1 0.8 --seed 0
run latency latency --model nanodet_g --out results/bench/latency --threads 2 --data data/footage/heldout/clips --repeats 50 --frames 30
run onboard onboard --model nanodet_g --out results/bench/onboard --threads 2 --onnx-python .venv-onboard/bin/python --starts 3
run switch switch --model nanodet_g --out results/bench/switch --threads 2 --repeats 30 --fps 15.0 --switches 8 --ros-seconds 30.0
run transport transport --model synthetic --out results/bench/transport --threads 1 --seconds 30.0 --fps 30.0 --size 640x480
run encoder_node encoder-node --model nanodet_g --out results/bench/encoder_node --threads 1 --seconds 30.0 --fps 30.0 --size 640x480 \
  --width 1.0 --runtimes onnx,torch
run batch batch --model nanodet_g --out results/bench/batch --threads 2 --batches 1,2,4,8,16 --repeats 20
run link link --model synthetic --out results/bench/link --threads 1 --schedule 20,2,0.5,0.1,5 --phase-seconds 15.0 \
  --modes raw,jpeg95,jpeg75,width0.25,width0.5,width1.0,adaptive --fps 10.0 --frames 50 --transport dds,zenoh \
  --data data/synthetic/val
run fleet fleet --model nanodet_g --out results/bench/fleet --threads 2 --robots 1,2,4,8 --seconds 40.0 --fps 4.0
run failover failover --model nanodet_g --out results/bench/failover --threads 2 --robots 4 --seconds 90.0 --fps 0.5 \
  --kill-at 30.0 --return-at 50.0
run restart restart --model nanodet_g --out results/bench/restart --threads 1 --runs 3 --victims decoder,encoder --cpu-load 0 --fps 5.0 \
  --down-s 4.0 --seconds 26.0
run soak soak --model synthetic --out results/bench/soak --threads 1 --minutes 10.0 --fps 30.0 --size 640x480 --width 1.0 --warmup-s 10.0 \
  --max-latency-growth-ms 50.0 --max-rss-slope 2.0 --progress-s 30.0
echo "$(date +%T) fuzz"
if ! "$sp" fuzz --cases 20000 --seed 0 --hang-ms 2000.0 --max-rss-growth-mib 512.0 --out results/bench/fuzz --model nanodet_g \
    --threads 1 --quiet > runs/bench_all/fuzz.log 2>&1; then
  echo "  fuzz failed: runs/bench_all/fuzz.log"; failed=1
fi
run report report
echo "$(date +%T) done"
exit $failed
