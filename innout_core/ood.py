"""The out-of-distribution (OOD) radiance field: one learned tri-plane, a per-frame code phi, and a small decoder.

Official ``TriPlaneItem`` (``triplanes_split.py:261-357``, docs/method.md §3.2): tri-plane ``[1,3,C,R,R] ~ N(0,1)``,
phi ``[T,32] ~ N(0,1)``, decoder = equalised-lr FC (C+32)->64, Softplus, FC 64->34. Outputs: raw density sigma
(channel 0), C features ``sigmoid*1.002-0.001`` (channels 1..C, the first 3 are RGB), blend ``b = sigmoid`` (last).
A point's feature is the **mean** of the three plane samples (the code; the paper says sum) concatenated with phi_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from innout_core.eg3d.mapping import FullyConnectedLayer
from innout_core.errors import BadInputError

__all__ = ["OODDecoder", "OODField"]


class OODDecoder(nn.Module):
    """FC in->hidden, Softplus, FC hidden->(1 + n_features + 1). Official names ``net.0`` / ``net.2``."""

    def __init__(self, in_features: int, n_features: int = 32, hidden_dim: int = 64) -> None:
        super().__init__()
        self.n_features = n_features
        self.net = nn.Sequential(
            FullyConnectedLayer(in_features, hidden_dim),
            nn.Softplus(),
            FullyConnectedLayer(hidden_dim, 1 + n_features + 1),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: [..., in] -> (features [..., n_features] in (-0.001, 1.001), sigma [..., 1] raw, blend [..., 1] in (0,1))."""
        o = self.net(x)
        sigma = o[..., :1]
        feats = torch.sigmoid(o[..., 1 : 1 + self.n_features]) * (1 + 2 * 0.001) - 0.001
        blend = torch.sigmoid(o[..., 1 + self.n_features :])
        return feats, sigma, blend


class OODField(nn.Module):
    """OOD tri-plane + per-frame codes + decoder.

    Args:
        n_frames: T, rows of phi.
        channels: C, tri-plane channels (32 official).
        resolution: tri-plane side (256 official; small for tiny runs).
        phi_dim: per-frame code size (32 official).
        hidden_dim: decoder width (64).
        box_warp: tri-plane cube side in world units (EG3D 1.0).
        generator: RNG for the N(0,1) initialisation of tri-plane, phi and decoder weights (None = a fresh seed-0
            generator, so construction never touches the global RNG).
    Parameters: ``triplanes`` [1,3,C,R,R], ``phi`` [T,phi_dim], ``decoder.net.{0,2}.{weight,bias}``.
    """

    def __init__(
        self,
        n_frames: int,
        channels: int = 32,
        resolution: int = 256,
        phi_dim: int = 32,
        hidden_dim: int = 64,
        box_warp: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if n_frames < 1 or channels < 3 or resolution < 2:
            raise BadInputError(f"OODField: bad sizes n_frames={n_frames} channels={channels} resolution={resolution}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.n_frames, self.channels, self.resolution, self.phi_dim = n_frames, channels, resolution, phi_dim
        self.box_warp = box_warp
        self.triplanes = nn.Parameter(torch.randn([1, 3, channels, resolution, resolution], generator=g))
        self.phi = nn.Parameter(torch.randn([n_frames, phi_dim], generator=g))
        with torch.random.fork_rng(devices=[]):  # FullyConnectedLayer draws from the global RNG: leave it untouched
            self.decoder = OODDecoder(channels + phi_dim, channels, hidden_dim)
        with torch.no_grad():  # ... and redraw the weights from ours
            for layer in (self.decoder.net[0], self.decoder.net[2]):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
                layer.bias.zero_()

    def query(self, points: Tensor, frame_idx: Tensor, *, fused: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Evaluate the field.

        Args:
            points: [N,P,3] world units (float32).
            frame_idx: [N] int64, row of phi for each batch item.
            fused: the fast form of the same maths (:meth:`_query_fused`); equal to the plain form up to float
                rounding (tested at 1e-5).
        Returns:
            colors [N,P,C] in (-0.001, 1.001), raw sigma [N,P,1], blend [N,P,1] in (0,1).
        """
        from innout_core.eg3d.rendering import sample_from_planes

        if points.ndim != 3 or points.shape[-1] != 3:
            raise BadInputError(f"OODField.query: points must be [N,P,3], got {tuple(points.shape)}")
        n = points.shape[0]
        if frame_idx.shape != (n,):
            raise BadInputError(f"OODField.query: frame_idx must be [{n}], got {tuple(frame_idx.shape)}")
        if fused:
            return self._query_fused(points, frame_idx)
        planes = self.triplanes.expand(n, -1, -1, -1, -1)
        feats = sample_from_planes(planes, points, self.box_warp).mean(dim=1)  # [N,P,C]
        phi = self.phi[frame_idx.to(self.phi.device)][:, None, :].expand(-1, points.shape[1], -1)
        return self.decoder(torch.cat([feats, phi], dim=-1))

    def _query_fused(self, points: Tensor, frame_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`query` in layouts that keep every large tensor contiguous, forward and backward.

        The tri-plane is shared by all frames, so each plane is sampled once for every point of the batch
        (channels-last planes) and the three [C, N*P] samples are summed in grid_sample's own layout; the first
        layer reads that sum through a transposed view, so autograd hands each plane's grid_sample backward a
        contiguous gradient (no [3, C, N*P] copy). phi's part of the first layer, ``W_phi phi_t + b``, is computed
        once per frame and broadcast (no [N, P, C+phi] concat), the mean's 1/3 is folded into the weight, and the
        hidden Softplus is the decoder module's fast CPU form (within 1e-6 of torch's).
        """
        from innout_core.eg3d.decoder import Softplus
        from innout_core.eg3d.rendering import project_onto_planes

        n, p, _ = points.shape
        c = self.channels
        planes = self.triplanes[0].contiguous(memory_format=torch.channels_last)  # [3,C,R,R]
        grid = project_onto_planes(points.reshape(1, n * p, 3), self.box_warp).to(planes.dtype)  # [1,3,N*P,2]
        feat_sum = None  # [C, N*P]: sum of the three planes' samples
        for i in range(3):
            s = F.grid_sample(planes[i : i + 1], grid[:, i : i + 1], mode="bilinear", padding_mode="zeros",
                              align_corners=False).view(c, n * p)
            feat_sum = s if feat_sum is None else feat_sum + s
        l0, l2 = self.decoder.net[0], self.decoder.net[2]
        w0 = l0.weight * l0.weight_gain
        phi = self.phi[frame_idx.to(self.phi.device)]  # [N,phi_dim]
        bias = torch.addmm(l0.bias * l0.bias_gain, phi, w0[:, c:].t())  # [N,hidden]
        h = torch.mm(feat_sum.t(), (w0[:, :c] / 3).t())  # [N*P,hidden]
        h = Softplus()((h.view(n, p, -1) + bias.unsqueeze(1)).view(n * p, -1))
        o = torch.addmm(l2.bias * l2.bias_gain, h, (l2.weight * l2.weight_gain).t()).view(n, p, -1)
        sigma = o[..., :1]
        colors = torch.sigmoid(o[..., 1 : 1 + c]) * (1 + 2 * 0.001) - 0.001
        blend = torch.sigmoid(o[..., 1 + c :])
        return colors, sigma, blend

    def ood_state(self) -> dict[str, Tensor]:
        """Detached copy of the tri-plane + decoder parameters (phi excluded; it is stored separately)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k != "phi"}

    @classmethod
    def from_state(cls, ood_state: dict[str, Tensor], phi: Tensor, box_warp: float = 1.0) -> "OODField":
        """Rebuild a field from :meth:`ood_state` and phi [T,phi_dim] (shapes are read from the tensors)."""
        try:
            tp = ood_state["triplanes"]
            hidden = ood_state["decoder.net.0.weight"].shape[0]
        except KeyError as exc:
            raise BadInputError(f"OOD state lacks {exc.args[0]!r}") from None
        if tp.ndim != 5 or phi.ndim != 2:
            raise BadInputError(f"OOD state: bad shapes triplanes {tuple(tp.shape)}, phi {tuple(phi.shape)}")
        field = cls(phi.shape[0], tp.shape[2], tp.shape[3], phi.shape[1], hidden, box_warp)
        field.load_state_dict({**ood_state, "phi": phi}, strict=True)
        return field.to(tp.device)
