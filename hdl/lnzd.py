"""Leading non-zero detection: a quadtree that picks the next non-zero input activation."""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import ACT_BITS

__all__ = ["Head", "LNZDNode", "LNZD"]


def Head(local_bits: int, pe_bits: int) -> data.StructLayout:
    """A candidate non-zero: its PE's list head (local index m, value) and the PE number."""
    return data.StructLayout({"valid": 1, "local": local_bits, "value": signed(ACT_BITS), "pe": pe_bits})


class LNZDNode(wiring.Component):
    """Up to four children in, the one with the lowest activation index out (EIE Sec. IV).

    Children are in increasing PE order and activation j = m * N + k, so among heads with
    the same local index m the leftmost child has the lowest j: compare m only and let
    ties go left. The grant from the parent goes to the chosen child.
    """

    def __init__(self, head_layout, n_children: int):
        if not 1 <= n_children <= 4:
            raise TypeError(f"An LNZD node has 1 to 4 children, not {n_children!r}")
        self.n_children = n_children
        super().__init__({
            "children": In(data.ArrayLayout(head_layout, n_children)),
            "out": Out(head_layout),
            "grant": In(1),
            "grants": Out(n_children),
        })

    def elaborate(self, platform):
        m = Module()
        layout = self.out.shape()

        def pick(a, ia, b, ib):
            """(head, child index) of the better of two candidates; ties go to `a`."""
            take_a = a.valid & (~b.valid | (a.local <= b.local))
            h = Signal(layout)
            i = Signal(range(4))
            with m.If(take_a):
                m.d.comb += [h.eq(a), i.eq(ia)]
            with m.Else():
                m.d.comb += [h.eq(b), i.eq(ib)]
            return h, i

        c = [(self.children[n], n) for n in range(self.n_children)]
        while len(c) > 1:      # pairwise: (0 vs 1), (2 vs 3), then the two winners
            nxt = [pick(*c[n], *c[n + 1]) for n in range(0, len(c) - 1, 2)]
            if len(c) % 2:
                nxt.append(c[-1])
            c = nxt
        best, idx = c[0]
        m.d.comb += self.out.eq(best)
        for n in range(self.n_children):
            m.d.comb += self.grants[n].eq(self.grant & best.valid & (idx == n))
        return m


class LNZD(wiring.Component):
    """The LNZD tree over N PEs: leaves of four PEs, then nodes of four, up to one root.

    `heads[k]` is PE k's non-zero list head (`valid`, `local`, `value`); the root gives the
    next broadcast (`valid`, `index` j = m * N + k, `value`). With `go` high the item is
    broadcast and `pops[k]` tells the winning PE to advance its list.
    """

    def __init__(self, n_pe: int, local_bits: int, index_bits: int):
        self.n_pe = n_pe
        self.pe_bits = max(1, (n_pe - 1).bit_length())
        self.head = Head(local_bits, self.pe_bits)
        nz = data.StructLayout({"local": local_bits, "value": signed(ACT_BITS)})
        super().__init__({
            "heads": In(data.ArrayLayout(nz, n_pe)),
            "heads_valid": In(n_pe),
            "valid": Out(1),
            "index": Out(index_bits),
            "value": Out(signed(ACT_BITS)),
            "go": In(1),
            "pops": Out(n_pe),
        })

    def elaborate(self, platform):
        m = Module()
        level = []
        for k in range(self.n_pe):
            h = Signal(self.head, name=f"leaf_head{k}")
            m.d.comb += [h.valid.eq(self.heads_valid[k]), h.local.eq(self.heads[k].local),
                         h.value.eq(self.heads[k].value), h.pe.eq(k)]
            level.append((h, self.pops[k]))
        depth = 0
        while True:
            nxt = []
            for g in range(0, len(level), 4):
                group = level[g:g + 4]
                node = LNZDNode(self.head, len(group))
                m.submodules[f"node_l{depth}_{g // 4}"] = node
                for n, (h, grant) in enumerate(group):
                    m.d.comb += [node.children[n].eq(h), grant.eq(node.grants[n])]
                nxt.append((node.out, node.grant))
            level = nxt
            depth += 1
            if len(level) == 1:
                break
        root, root_grant = level[0]
        m.d.comb += [
            self.valid.eq(root.valid),
            self.index.eq(root.local * self.n_pe + root.pe),
            self.value.eq(root.value),
            root_grant.eq(self.go & root.valid),
        ]
        return m
