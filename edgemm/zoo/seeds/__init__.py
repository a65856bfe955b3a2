"""The seed architectures: small multimodal models trained on the shipped AV-MNIST-style data (FSDD + MNIST).

- ``seed_text_image`` (``text_image``): caption (Embedding + LSTM) + frame (CNN), concatenation fusion;
- ``seed_multitask`` (``multitask``): speech -> digit (classification) and speech duration (regression);
- ``seed_av_text`` (``av_text``): frame + speech + caption, softmax-weighted fusion of modality embeddings;
- ``seed_dual_encoder`` (``dual_encoder``): CLIP-style image and text towers, zero-shot digits from prompts
  (two graphs in one bundle: ``dual_bundle``).

Recipes: ``export/seed_*.toml``; tokenizers and data: ``export/seeds/``; weights: ``edgemm/zoo/checkpoints/seed_*.pt``;
training: ``scripts/train_seeds.py``. Importing this package imports no torch (the model modules do).
"""
SEEDS = ("seed_text_image", "seed_multitask", "seed_av_text", "seed_dual_encoder")
