"""Every registered ``_tiny`` model runs forward and backward on CPU; registry and fusion properties."""

from __future__ import annotations

import inspect

import pytest
import torch

from avlearn.models import create_model, example_input, get_model_info, list_models, register_model
from avlearn.models.fusion import MBT
from avlearn.models.inflate import I3DResNet, inflate
from avlearn.models.nonlocal_block import NonLocalBlock, insert_nonlocal

torch.set_num_threads(2)

TINY = list_models("*_tiny", interface="encoder")


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    takes_classes = "num_classes" in inspect.signature(get_model_info(name).builder).parameters
    model = create_model(name, num_classes=3) if takes_classes else create_model(name)
    x = example_input(name, batch_size=2, generator=torch.Generator().manual_seed(0))
    logits = model(x)
    assert logits.shape[0] == 2
    if takes_classes:
        assert logits.shape == ((2, x.shape[2], 3) if getattr(model, "many_to_many", False) else (2, 3))
    assert torch.isfinite(logits).all()
    logits.logsumexp(-1).mean().backward()
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    missing = [k for k, p in trainable.items() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())
    assert any(p.grad.abs().sum() > 0 for p in trainable.values())


@pytest.mark.parametrize("name", TINY)
def test_encoder_interface(name):
    model = create_model(name).eval()
    x = example_input(name, batch_size=2)
    with torch.no_grad():
        features = model.forward_features(x)
        embedding = model.forward_head(features, pre_logits=True)
        assert embedding.shape[0] == 2 and embedding.shape[-1] == model.head_hidden_size
        if isinstance(x, torch.Tensor):
            tokens = model.forward_tokens(x)
            assert tokens.dim() == 3 and tokens.shape[0] == 2 and tokens.shape[2] == model.num_features
        torch.testing.assert_close(model.forward_head(features), model(x))


def test_every_model_has_a_tiny_variant():
    full = [n for n in list_models() if not n.endswith("_tiny")]
    assert [n for n in full if f"{n}_tiny" not in list_models("*_tiny")] == []


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):

        @register_model(input_size=(3, 4, 16, 16))
        def c3d_tiny():  # noqa: F811 - the point of the test
            return None

    assert get_model_info("c3d_tiny").builder.__module__ == "avlearn.models.video_cnn"
    with pytest.raises(ValueError, match="unknown model"):
        create_model("c3d_huge")


def _mbt(fusion_layer: int, num_bottlenecks: int = 2) -> MBT:
    torch.manual_seed(0)
    return MBT(("video", "spec"), dim=16, num_layers=3, num_heads=2, fusion_layer=fusion_layer,
               num_bottlenecks=num_bottlenecks).eval()  # fmt: skip


def _video_tokens_after_changing_audio(model: MBT) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    video, spec = torch.randn(2, 5, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    with torch.no_grad():
        a = model({"video": video, "spec": spec})["video"]
        b = model({"video": video, "spec": spec + torch.randn(spec.shape, generator=g)})["video"]
    return a, b


def test_mbt_late_fusion_has_no_cross_modal_exchange():
    model = _mbt(fusion_layer=3)  # fusion_layer = num_layers
    assert model.bottleneck is None  # no unused parameters
    a, b = _video_tokens_after_changing_audio(model)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("num_bottlenecks", [2, 0])
def test_mbt_exchanges_from_fusion_layer(num_bottlenecks):
    a, b = _video_tokens_after_changing_audio(_mbt(fusion_layer=0, num_bottlenecks=num_bottlenecks))
    assert (a - b).abs().max() > 1e-4


def test_mbt_below_fusion_layer_video_tokens_ignore_audio():
    model = _mbt(fusion_layer=1)  # layer 0 alone, layers 1 and 2 with bottlenecks
    seen = []
    hook = model.layers["video"][0].register_forward_hook(lambda m, i, o: seen.append(o))
    a, b = _video_tokens_after_changing_audio(model)
    hook.remove()
    torch.testing.assert_close(seen[0], seen[1], rtol=0, atol=0)  # below the fusion layer: unchanged
    # layer 1 writes the audio into the bottlenecks, layer 2's video tokens read them
    assert (a - b).abs().max() > 1e-4


def test_mbt_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fusion_layer"):
        MBT(dim=16, num_layers=2, num_heads=2, fusion_layer=3)
    with pytest.raises(ValueError, match="expects tokens"):
        _mbt(1)({"video": torch.zeros(1, 2, 16)})


def test_av_model_gives_per_modality_embeddings():
    model = create_model("mbt_tiny").eval()
    with torch.no_grad():
        emb = model.forward_embeddings(example_input("mbt_tiny"))
    assert {k: tuple(v.shape) for k, v in emb.items()} == {"video": (2, 32), "spec": (2, 32)}


def test_i3d_inflation_of_a_boring_video_gives_the_2d_output():
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    net2d = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=7).double()
    net2d(torch.randn(8, 3, 32, 32, dtype=torch.float64))  # train-mode pass: non-trivial BN statistics
    net2d.eval()
    i3d = I3DResNet(net2d, time_kernel=3).eval()
    image = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    video = image.unsqueeze(2).expand(-1, -1, 5, -1, -1)  # the same image at all 5 frames
    with torch.no_grad():
        torch.testing.assert_close(i3d(video), net2d(image), rtol=0, atol=1e-12)
        # per frame, not only after pooling: first and last frames too (replicate temporal padding)
        trunk2d = torch.nn.Sequential(*list(net2d.children())[:-2])
        maps = i3d.forward_features(video)  # (B, 512, T, 1, 1)
        torch.testing.assert_close(maps, trunk2d(image).unsqueeze(2).expand_as(maps), rtol=0, atol=1e-12)


def test_inflated_kernels_are_repeated_and_divided():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    conv3d = inflate(torch.nn.Sequential(conv), time_kernel=5)[0]
    assert conv3d.weight.shape == (4, 3, 5, 3, 3)
    torch.testing.assert_close(conv3d.weight.sum(2), conv.weight)
    torch.testing.assert_close(conv3d.weight[:, :, 0], conv.weight / 5)


def test_nonlocal_block_inserted_into_a_3d_cnn():
    torch.manual_seed(0)
    model = create_model("cnn3d_tiny").eval()
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        before = model(x)
        insert_nonlocal(model, {"features.pool1": 4})  # zero-initialized: the network is unchanged
        assert isinstance(model.features.pool1[1], NonLocalBlock)
        torch.testing.assert_close(model(x), before)
        torch.nn.init.ones_(model.features.pool1[1].bn.weight)
        assert not torch.allclose(model(x), before)
    block = NonLocalBlock(4, zero_init=False).eval()
    maps = torch.randn(1, 4, 3, 5, 5, requires_grad=True)
    block(maps)[0, :, 0, 0, 0].sum().backward()
    assert (maps.grad[0, :, 2, 4, 4] != 0).any()  # one position sees the whole clip
    with pytest.raises(ValueError, match="no submodule"):
        insert_nonlocal(model, {"features.nope": 4})


def test_cnn_lstm_many_to_many():
    model = create_model("cnn_lstm_seq_tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 6, 32, 32)).shape == (2, 6, 5)  # any clip length


@pytest.mark.parametrize(("name", "channels", "hidden"), [("conv_gru_tiny", 8, 8), ("conv_gru", 256, 256)])
def test_conv_gru_cell_is_one_gru_of_3x3_convolutions(name, channels, hidden):
    # Ballas et al.: update and reset gates and the candidate, each a 3x3 convolution of [input, state]
    cell = create_model(name).cell
    assert sum(p.numel() for p in cell.parameters()) == 3 * hidden * ((channels + hidden) * 3 * 3 + 1)


def test_conv_gru_states_are_causal_and_shared_over_time():
    torch.manual_seed(0)
    gru = create_model("conv_gru_tiny").eval()
    clip = torch.randn(1, 3, 7, 32, 32)
    with torch.no_grad():
        states = gru.forward_features(clip)
        assert states.shape[2] == 7  # one state per frame
        # a frame's state depends on that frame and the ones before it, through the same cell at every step
        torch.testing.assert_close(gru.forward_features(clip[:, :, :4]), states[:, :, :4])
        maps = gru.cnn(clip[0].transpose(0, 1))  # (T, D, H', W')
        h = gru.cell(maps[0:1], torch.zeros_like(states[:, :, 0]))
        torch.testing.assert_close(gru.cell(maps[1:2], h), states[:, :, 1])


def test_two_stream_fuses_probabilities():
    model = create_model("two_stream_tiny").eval()
    with torch.no_grad():
        out = model(example_input("two_stream_tiny"))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2))
