"""The CGCNN layer against a hand computation; encoder shapes; physical invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pymatgen.core.operations import SymmOp

from ml.features.atom_features import atom_feature_table
from ml.data.batches import GraphStore
from ml.models.cmml import CMML, CMMLConfig, load_model, save_model
from ml.mapping.embed import embed_crystals
from ml.features.graph import crystal_graph
from ml.models.cgcnn import CGCNNConfig, CGCNNConv, CrystalEncoder, GaussianDistance
from ml.models.xrd_cnn import XRDCNNConfig, XRDEncoder

SMALL = CMMLConfig(
    crystal=CGCNNConfig(hidden=16, head_hidden=32, embedding_dim=24),
    xrd=XRDCNNConfig(channels=(4, 8), pools=(8, 8), head_hidden=32, embedding_dim=24),
)


def randomise_batch_norm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters in every BatchNorm."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm1d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator))
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.randn(n, generator=generator))
            bn.bias.data.copy_(torch.randn(n, generator=generator))


def test_cgcnn_conv_equals_hand_computation():
    g = torch.Generator().manual_seed(0)
    hidden, k = 3, 5
    conv = CGCNNConv(hidden, k)
    randomise_batch_norm(conv, g)
    conv.eval()
    x = torch.randn(4, hidden, generator=g)
    # edges j -> i (row 0 neighbour j, row 1 centre i); node 3 receives from 0, 1 and 2, node 2 from none
    edge_index = torch.tensor([[1, 0, 3, 0, 1, 2], [0, 1, 1, 3, 3, 3]])
    u = torch.randn(edge_index.shape[1], k, generator=g)

    w, b = conv.fc_full.weight.detach(), conv.fc_full.bias.detach()

    def bn(value, layer):
        return (value - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps) * layer.weight + layer.bias

    expected = torch.empty(4, hidden)
    with torch.no_grad():
        for i in range(4):
            total = torch.zeros(hidden)
            for e in range(edge_index.shape[1]):
                j, centre = int(edge_index[0, e]), int(edge_index[1, e])
                if centre != i:
                    continue
                z = torch.cat([x[i], x[j], u[e]])  # z_ij = v_i ⊕ v_j ⊕ u_ij
                gated = bn(w @ z + b, conv.bn_edges)
                f, c = gated[:hidden], gated[hidden:]
                total += torch.sigmoid(f) * F.softplus(c)
            expected[i] = F.softplus(x[i] + bn(total, conv.bn_sum))
        got = conv(x, edge_index, u)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # an atom without neighbours still gets softplus(v_i + BN(0))
    torch.testing.assert_close(got[2], F.softplus(x[2] + bn(torch.zeros(hidden), conv.bn_sum)))


def test_cgcnn_conv_training_mode_matches_the_concatenated_layer_with_its_gradients():
    """Train mode (batch statistics) against the paper's form W [v_i ⊕ v_j ⊕ u_ij]: the same
    output and the same gradients, so the per-atom split and the in-place sums are exact."""
    g = torch.Generator().manual_seed(2)
    hidden, k = 4, 6
    conv = CGCNNConv(hidden, k).train()
    edge_index = torch.tensor([[1, 0, 3, 0, 1, 2, 4, 4], [0, 1, 1, 3, 3, 3, 2, 0]])
    u = torch.randn(edge_index.shape[1], k, generator=g)
    x = torch.randn(5, hidden, generator=g, requires_grad=True)
    got = conv(x, edge_index, u)
    (got * torch.arange(got.numel()).reshape(got.shape)).sum().backward()
    got_grad, weight_grad = x.grad.clone(), conv.fc_full.weight.grad.clone()

    x.grad, conv.fc_full.weight.grad = None, None
    j, i = edge_index
    gated = conv.bn_edges(conv.fc_full(torch.cat([x[i], x[j], u], dim=1)))
    f, c = gated.chunk(2, dim=1)
    summed = torch.zeros(5, hidden).index_add(0, i, torch.sigmoid(f) * F.softplus(c))
    expected = F.softplus(x + conv.bn_sum(summed))
    (expected * torch.arange(expected.numel()).reshape(expected.shape)).sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_grad, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weight_grad, conv.fc_full.weight.grad, rtol=1e-5, atol=1e-5)


def test_gaussian_distance_has_no_subnormal_values():
    """exp(−87 … −103) would be subnormal float32, which x86 computes with 3–4× slower."""
    expand = GaussianDistance(8.0, 0.2)
    distance = torch.linspace(0.0, 8.0, 20001)
    out = expand(distance)
    tiny = torch.finfo(torch.float32).tiny
    assert not ((out > 0) & (out < tiny)).any()
    exact = torch.exp(-((distance[:, None].double() - expand.centres.double()) ** 2) / 0.2**2)
    assert (out == 0).sum() > 0  # far tails are exactly zero …
    torch.testing.assert_close(out.double(), exact, rtol=5e-5, atol=2e-35)  # … below exp(−80); nothing else moved


def test_gaussian_distance_expansion():
    expand = GaussianDistance(8.0, 0.2)
    out = expand(torch.tensor([0.0, 2.0, 7.9]))
    assert out.shape == (3, 41)
    assert out[1, 10] == pytest.approx(1.0)  # centre 2.0 Å
    assert out[1, 11] == pytest.approx(np.exp(-1.0), rel=1e-5)  # one width away
    assert int(out[2].argmax()) in (39, 40)


def graphs_of(structures) -> GraphStore:
    return GraphStore.from_graphs([crystal_graph(s) for s in structures])


@pytest.fixture(scope="module")
def model() -> CMML:
    torch.manual_seed(0)
    net = CMML(SMALL, torch.from_numpy(atom_feature_table()))
    randomise_batch_norm(net, torch.Generator().manual_seed(1))
    return net.eval()


def test_output_shapes(model, crystals):
    store = graphs_of([crystals.nacl(), crystals.cscl(), crystals.triclinic()])
    batch = store.batch(np.arange(3))
    assert batch.atomic_numbers.shape == (8 + 2 + 5,) and batch.edge_index.shape == (2, 15 * 12)
    patterns = torch.rand(3, 5000)
    crystal, xrd = model(*batch.inputs(), patterns)
    assert crystal.shape == xrd.shape == (3, 24)
    assert model.crystal(*batch.inputs()).shape == (3, 24)
    assert model.xrd(patterns).shape == (3, 24)
    assert model.crystal.pooled(*batch.inputs()).shape == (3, 16)
    # the default (CPU recipe) encoders
    default_xrd = XRDEncoder(XRDCNNConfig()).eval()
    assert default_xrd(torch.rand(2, 5000)).shape == (2, 128)
    default_crystal = CrystalEncoder(CGCNNConfig(), torch.from_numpy(atom_feature_table())).eval()
    assert default_crystal(*batch.inputs()).shape == (3, 128)


def embed(model, structures) -> np.ndarray:
    return embed_crystals(model, graphs_of(structures))


def test_embedding_invariant_to_site_permutation(model, crystals):
    structure = crystals.triclinic()
    order = [3, 0, 4, 2, 1]
    permuted = type(structure).from_sites([structure[i] for i in order])
    assert permuted.atomic_numbers != structure.atomic_numbers
    e = embed(model, [structure, permuted])
    np.testing.assert_allclose(e[0], e[1], rtol=1e-5, atol=1e-5)


def test_embedding_invariant_to_rotation(model, crystals):
    structure = crystals.triclinic()
    rotated = structure.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    assert not np.allclose(rotated.lattice.matrix, structure.lattice.matrix)
    e = embed(model, [structure, rotated])
    np.testing.assert_allclose(e[0], e[1], rtol=1e-4, atol=1e-4)


def test_embedding_invariant_to_supercell_of_nacl(model, crystals):
    # NaCl: every atom's 12 nearest are 6 unlike at a/2 and 6 like at a/√2, however the ties
    # among the 12 like neighbours are broken, so mean pooling gives the same crystal vector.
    e = embed(model, [crystals.nacl(), crystals.nacl() * (2, 2, 2), crystals.nacl() * (1, 1, 3)])
    np.testing.assert_allclose(e[1], e[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(e[2], e[0], rtol=1e-4, atol=1e-4)


def test_different_crystals_embed_differently(model, crystals):
    # guards the invariance tests against a model that maps everything to one point
    e = embed(model, [crystals.nacl(), crystals.cscl(), crystals.nacl(6.0), crystals.triclinic()])
    distances = np.linalg.norm(e[:, None] - e[None], axis=-1)[np.triu_indices(4, 1)]
    assert distances.min() > 1e-2


def test_batched_embedding_equals_one_at_a_time(model, crystals):
    structures = [crystals.nacl(), crystals.cscl(), crystals.silicon(), crystals.triclinic()]
    together = embed(model, structures)
    alone = np.concatenate([embed(model, [s]) for s in structures])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_checkpoint_round_trip(model, tmp_path, crystals):
    path = tmp_path / "m" / "model.pt"
    save_model(path, model, {"note": "hello"})
    loaded, payload = load_model(path)
    assert payload["note"] == "hello" and loaded.config == SMALL and not loaded.training
    np.testing.assert_array_equal(embed(loaded, [crystals.nacl()]), embed(model, [crystals.nacl()]))
    torch.save({"format": 99}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a matmap CMML checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_config_validation():
    with pytest.raises(ValueError, match="embedding sizes differ"):
        CMMLConfig(crystal=CGCNNConfig(embedding_dim=8), xrd=XRDCNNConfig(embedding_dim=16))
    with pytest.raises(ValueError):
        XRDCNNConfig(channels=(4, 8), pools=(4,))
    with pytest.raises(ValueError):
        CGCNNConfig(gaussian_step=9.0)
