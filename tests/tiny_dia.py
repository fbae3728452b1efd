"""A tiny, randomly initialised Dia text-to-speech model and DAC codec, built offline: the real transformers classes
at toy size, saved as the model folder kinema's voice lines load (safetensors, feature extractor, byte tokenizer,
generation config, the codec in ``codec/``). It says nothing intelligible; it runs every step a real one does."""

from pathlib import Path

RATE = 44100  # DAC 44 kHz's, as the real codec


def build_tiny_dia(folder: Path) -> Path:
    import torch
    from transformers import (
        DacConfig,
        DacModel,
        DiaConfig,
        DiaFeatureExtractor,
        DiaForConditionalGeneration,
        DiaTokenizer,
    )

    torch.manual_seed(0)
    codec = DacModel(
        DacConfig(
            encoder_hidden_size=4,
            decoder_hidden_size=16,
            downsampling_ratios=[2, 4, 8, 8],  # 512 samples a frame, as the real codec
            n_codebooks=9,
            codebook_size=1024,
            codebook_dim=4,
            hidden_size=32,
            sampling_rate=RATE,
        )
    )
    heads = dict(num_attention_heads=2, num_key_value_heads=2, head_dim=8)
    config = DiaConfig(
        encoder_config=dict(num_hidden_layers=1, hidden_size=16, intermediate_size=32, vocab_size=256, **heads),
        decoder_config=dict(
            num_hidden_layers=1,
            hidden_size=16,
            intermediate_size=32,
            vocab_size=1028,
            num_channels=9,
            max_position_embeddings=2048,  # a 10 s voice prompt (862 frames) and a line after it
            cross_num_attention_heads=2,
            cross_head_dim=8,
            cross_num_key_value_heads=2,
            cross_hidden_size=16,
            **heads,
        ),
        delay_pattern=[0, 8, 9, 10, 11, 12, 13, 14, 15],
    )
    torch.manual_seed(0)
    model = DiaForConditionalGeneration(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    DiaTokenizer().save_pretrained(folder)
    DiaFeatureExtractor(sampling_rate=RATE, hop_length=512).save_pretrained(folder)
    codec.save_pretrained(folder / "codec", safe_serialization=True)
    return folder
