python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
for b in jax torch; do
  echo "=== $b"
  KERAS_BACKEND=$b python3 examples/mixed_precision_demo.py --quiet 2>&1 | grep -v "^I0000\|^W0000\|^E0000\|^WARNING"
  KERAS_BACKEND=$b python3 -c "
from gometal_keras import ModelBuilder, Trainer, TrainerConfig, demo_dataset
x, y = demo_dataset(512, 784)
for p in ('float32','mixed_float16','mixed_bfloat16','auto'):
    t = Trainer(ModelBuilder([64,784]).add_dense(256).add_batchnorm().add_relu().add_dropout(0.2).add_dense(10), TrainerConfig(batch_size=64, precision=p, seed=1))
    r = t.fit(x, y, epochs=3); b = t.train_batch(x[:64], y[:64]).loss
    print(p, t.plan.label(), [round(v,4) for v in r.losses], round(b,4), t.predict(x[:5]).shape)
" 2>&1 | grep -v "^I0000\|^W0000\|^E0000\|^WARNING"
done
KERAS_BACKEND=jax python3 bench/interleave_jax.py seed wide --rounds 40 2>&1 | grep -v "^I0000\|^W0000\|^E0000\|^WARNING"
