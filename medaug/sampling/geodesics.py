"""Exponential map by geodesic shooting (thesis Alg. 2) and the Riemannian random walk (Alg. 3).

Geodesics solve Hamilton's equations for H(p, q) = ½ qᵀ G⁻¹(p) q (Eq. 2.1), with G⁻¹ of Eq. 1.7:
    ∂H/∂q = G⁻¹(p) q,    ∂H/∂p = −Σᵢ wᵢ(p) ‖Lᵢᵀ q‖² (p − cᵢ) / T²   (:meth:`Metric.quadratic_gradient`),
integrated by the second-order Runge-Kutta (midpoint) scheme from q₀ = G(z₀) v.
"""

from __future__ import annotations

import torch

from medaug.generative.metric import Metric
from medaug.sampling.adaptation import adapted_step, dual_averaging_start, dual_averaging_update
from medaug.sampling.hmc import ChainResult, Support


def hamiltonian_gradients(metric: Metric, p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂H/∂p, ∂H/∂q) of H(p, q) = ½ qᵀ G⁻¹(p) q, batched (B, d)."""
    return metric.quadratic_gradient(p, q), torch.einsum("bkl,bl->bk", metric.inverse(p), q)


def exponential_map(metric: Metric, z: torch.Tensor, v: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Exp_z(v): the geodesic from z with initial velocity v, at time 1 (RK2, ``steps`` steps)."""
    p = z
    q = torch.linalg.solve(metric.inverse(z), v)  # q = G(z) v
    dt = 1.0 / steps
    for _ in range(steps):
        d_p, d_q = hamiltonian_gradients(metric, p, q)
        p_half, q_half = p + 0.5 * dt * d_q, q - 0.5 * dt * d_p
        d_p, d_q = hamiltonian_gradients(metric, p_half, q_half)
        p, q = p + dt * d_q, q - dt * d_p
    return p


def riemannian_random_walk(metric: Metric, start: torch.Tensor, *, steps: int, sigma: float, inside: Support,
                           generator: torch.Generator, shooting_steps: int = 10, warmup: int = 0,
                           target_acceptance: float = 0.5, per_chain: bool = False,
                           trace_chains: int = 0) -> ChainResult:
    """Alg. 3: propose Exp_z(v), v ~ N(0, σ² I); accept with α = min(1, √det G⁻¹(z̃) / √det G⁻¹(z)) inside
    the support. During ``warmup`` proposals σ is adapted by dual averaging on α (discarded states)."""
    z = start.clone()

    def log_volume(points):
        return metric.log_volume_and_gradient(points)[0]

    def transition(z, volume, scale):
        v = scale * torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        proposal = exponential_map(metric, z, v, shooting_steps)
        valid = inside(proposal) & torch.isfinite(proposal).all(1)
        proposal_volume = torch.where(valid, log_volume(torch.where(valid[:, None], proposal, z)), volume)
        log_alpha = torch.where(valid, (proposal_volume - volume).clamp(max=0.0), torch.full_like(volume, -torch.inf))
        accept = torch.log(torch.rand(len(z), generator=generator, dtype=z.dtype, device=z.device)) < log_alpha
        return (torch.where(accept[:, None], proposal, z), torch.where(accept, proposal_volume, volume), accept,
                log_alpha.exp())

    volume = log_volume(z)
    state = dual_averaging_start(torch.full((len(z),) if per_chain else (1,), float(sigma), dtype=z.dtype,
                                            device=z.device))
    for _ in range(warmup):
        z, volume, _, alpha = transition(z, volume, state.log_step.exp().expand(len(z))[:, None])
        state = dual_averaging_update(state, alpha if per_chain else alpha.mean()[None], target_acceptance)
    scale = adapted_step(state).expand(len(z))
    accepted = torch.zeros(len(z), dtype=z.dtype, device=z.device)
    trace = []
    for _ in range(steps):
        z, volume, accept, _ = transition(z, volume, scale[:, None])
        accepted += accept.to(z.dtype)
        if trace_chains:
            trace.append(z[:trace_chains].clone())
    return ChainResult(z, accepted / max(steps, 1), torch.stack(trace) if trace else None, scale.clone(), start)


def curve_length(metric_tensor, curve: torch.Tensor) -> float:
    """Riemannian length Σ √(Δᵀ G(midpoint) Δ) of a polyline (n, d)."""
    steps = curve[1:] - curve[:-1]
    metric = metric_tensor(0.5 * (curve[1:] + curve[:-1]))
    return float(torch.einsum("nk,nkl,nl->n", steps, metric, steps).clamp_min(0).sqrt().sum())


def shortest_path(metric_tensor, start: torch.Tensor, end: torch.Tensor, nodes: torch.Tensor, *,
                  neighbours: int = 10, points: int = 20) -> torch.Tensor:
    """Approximate geodesic from ``start`` to ``end`` (d,) as a shortest path on the k-nearest-neighbour
    graph of ``nodes`` ∪ {start, end}, edges weighted by their Riemannian length (midpoint rule),
    resampled to ``points`` points equally spaced in Euclidean arc length."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    vertices = torch.cat([start[None], end[None], nodes])
    k = min(neighbours, len(vertices) - 1)
    nearest = torch.cdist(vertices, vertices).topk(k + 1, largest=False).indices[:, 1:]
    rows = torch.arange(len(vertices)).repeat_interleave(k)
    cols = nearest.reshape(-1)
    steps = vertices[cols] - vertices[rows]
    metric = metric_tensor(0.5 * (vertices[cols] + vertices[rows]))
    lengths = torch.einsum("nk,nkl,nl->n", steps, metric, steps).clamp_min(1e-12).sqrt()
    graph = csr_matrix((lengths.double().numpy(), (rows.numpy(), cols.numpy())), shape=(len(vertices),) * 2)
    _, predecessors = dijkstra(graph, directed=False, indices=0, return_predecessors=True)
    if predecessors[1] < 0:
        raise ValueError("the end point is not connected to the start point: add nodes or neighbours")
    order, node = [1], 1
    while node != 0:
        node = int(predecessors[node])
        order.append(node)
    path = vertices[order[::-1]]
    arc = torch.cat([torch.zeros(1, dtype=path.dtype), (path[1:] - path[:-1]).norm(dim=1).cumsum(0)])
    targets = torch.linspace(0, float(arc[-1]), points, dtype=path.dtype)
    segment = torch.searchsorted(arc, targets).clamp(1, len(path) - 1)
    share = ((targets - arc[segment - 1]) / (arc[segment] - arc[segment - 1]).clamp_min(1e-12))[:, None]
    return path[segment - 1] + share * (path[segment] - path[segment - 1])
