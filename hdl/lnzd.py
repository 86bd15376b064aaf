"""Leading non-zero detection: a pipelined quadtree that merges the PEs' non-zero lists."""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Module, Signal, signed
from amaranth.hdl import ResetInserter
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eie.golden_model.config import lnzd_levels

from .params import ACT_BITS
from .reg_fifo import RegisterFIFO

__all__ = ["Head", "LNZDNode", "LNZD"]


def Head(local_bits: int, pe_bits: int) -> data.StructLayout:
    """A candidate non-zero: its PE's list head (local index m, value) and the PE number."""
    return data.StructLayout({"local": local_bits, "value": signed(ACT_BITS), "pe": pe_bits})


class LNZDNode(wiring.Component):
    """Up to four sorted streams in, their merge out, one item per cycle (EIE Sec. IV).

    Children are in increasing PE order and activation j = m * N + k, so among heads with
    the same local index m the leftmost child has the lowest j: compare m only and let
    ties go left. The node passes on the lowest head once every child either has a head
    or is `done` (its list is walked: nothing lower can come later), into a two-entry
    output buffer whose level is a register: the parent's take does not reach back into
    this node's choice, so every tree level is one register stage (`lnzd_level_latency`)
    and a full buffer still passes one item per cycle. `done` = every child done and the
    buffer empty. `flush` (batch cycle 0) empties the buffer.
    """

    def __init__(self, head_layout, n_children: int):
        if not 1 <= n_children <= 4:
            raise TypeError(f"An LNZD node has 1 to 4 children, not {n_children!r}")
        self.n_children = n_children
        super().__init__({
            "children": In(stream.Signature(head_layout)).array(n_children),
            "children_done": In(n_children),
            "out": Out(stream.Signature(head_layout)),
            "done": Out(1),
            "flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        layout = self.out.payload.shape()
        buf = ResetInserter(self.flush)(RegisterFIFO(width=layout.size, depth=2))
        m.submodules.buffer = buf

        # Child n wins if it is valid and beats every other valid child: a lower m, or the
        # same m and a lower child number. All pairwise comparisons run side by side, so
        # the choice is one comparator deep whatever the number of children.
        kids = self.children
        n_kids = self.n_children
        wins = []
        for n in range(n_kids):
            beats = [kids[n].valid]
            for o in range(n_kids):
                if o != n:
                    closer = kids[n].payload.local <= kids[o].payload.local if n < o else \
                        kids[n].payload.local < kids[o].payload.local
                    beats.append(~kids[o].valid | closer)
            w = Signal(name=f"win{n}")
            m.d.comb += w.eq(Cat(*beats).all())
            wins.append(w)
        any_valid = Cat(k.valid for k in kids).any()
        best = Signal(layout)          # AND-OR of the one-hot choice: no priority chain
        m.d.comb += best.as_value().eq(
            functools.reduce(operator.or_, [kids[n].payload.as_value() & wins[n].replicate(layout.size)
                                            for n in range(n_kids)]))
        settled = Cat(kids[n].valid | self.children_done[n] for n in range(self.n_children)).all()
        emit = Signal()
        m.d.comb += [
            emit.eq(buf.w_rdy & settled & any_valid),
            buf.w_en.eq(emit), buf.w_data.eq(best),
            self.out.valid.eq(buf.r_rdy), self.out.payload.eq(buf.r_data), buf.r_en.eq(self.out.ready),
            self.done.eq(self.children_done.all() & ~buf.r_rdy),
        ]
        for n in range(n_kids):
            m.d.comb += kids[n].ready.eq(emit & wins[n])
        return m


class LNZD(wiring.Component):
    """The LNZD tree over N PEs: leaves of four PEs, then nodes of four, up to one root.

    `heads[k]` is PE k's non-zero list as a stream (local index m, value) with
    `heads_done[k]` once it is walked. The root gives the next broadcast (`out`: index
    j = m * N + k, value), the lowest j of all lists, one per cycle after the tree has
    filled (docs/cycle-model.md, `lnzd_latency`); `done` once every list is broadcast.

    `leaf_slice`: each list passes a two-entry RegisterFIFO before its leaf, whose ready
    (level < 2) comes from a register: the leaf's choice then drives only the slice next
    to it, not the PE's prefetch buffer. It costs one cycle of list latency, no throughput.
    """

    def __init__(self, n_pe: int, local_bits: int, index_bits: int, *, leaf_slice: bool = False):
        self.n_pe = n_pe
        self.leaf_slice = leaf_slice
        self.pe_bits = max(1, (n_pe - 1).bit_length())
        self.levels = lnzd_levels(n_pe)
        self.head = Head(local_bits, self.pe_bits)
        nz = data.StructLayout({"local": local_bits, "value": signed(ACT_BITS)})
        item = data.StructLayout({"index": index_bits, "value": signed(ACT_BITS)})
        super().__init__({
            "heads": In(stream.Signature(nz)).array(n_pe),
            "heads_done": In(n_pe),
            "out": Out(stream.Signature(item)),
            "done": Out(1),
            "flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        level = []
        for k in range(self.n_pe):
            leaf = stream.Signature(self.head).create(path=(f"leaf{k}",))
            src = self.heads[k]
            done = self.heads_done[k]
            if self.leaf_slice:
                nz = src.payload.shape()
                sl = ResetInserter(self.flush)(RegisterFIFO(width=nz.size, depth=2))
                m.submodules[f"leaf_slice{k}"] = sl
                head = nz(sl.r_data)
                m.d.comb += [sl.w_data.eq(src.payload), sl.w_en.eq(src.valid), src.ready.eq(sl.w_rdy),
                             leaf.valid.eq(sl.r_rdy), sl.r_en.eq(leaf.ready),
                             leaf.payload.local.eq(head.local), leaf.payload.value.eq(head.value)]
                done = self.heads_done[k] & ~sl.r_rdy
            else:
                m.d.comb += [leaf.valid.eq(src.valid), src.ready.eq(leaf.ready),
                             leaf.payload.local.eq(src.payload.local), leaf.payload.value.eq(src.payload.value)]
            m.d.comb += leaf.payload.pe.eq(k)
            level.append((leaf, done))
        depth = 0
        while True:
            nxt = []
            for g in range(0, len(level), 4):
                group = level[g:g + 4]
                node = LNZDNode(self.head, len(group))
                m.submodules[f"node_l{depth}_{g // 4}"] = node
                m.d.comb += node.flush.eq(self.flush)
                for n, (child, done) in enumerate(group):
                    wiring.connect(m, child, node.children[n])
                    m.d.comb += node.children_done[n].eq(done)
                nxt.append((node.out, node.done))
            level = nxt
            depth += 1
            if len(level) == 1:
                break
        assert depth == self.levels
        root, root_done = level[0]
        m.d.comb += [
            self.out.valid.eq(root.valid), root.ready.eq(self.out.ready),
            self.out.payload.index.eq(root.payload.local * self.n_pe + root.payload.pe),
            self.out.payload.value.eq(root.payload.value),
            self.done.eq(root_done),
        ]
        return m
