"""Rounds of a TFF learning process whose secure modular sums run the Bonawitz protocol.

TFF splits a round into its MapReduceForm (``prepare`` on the server, ``work`` on each client,
ordinary aggregation, secure sums, ``update`` on the server): the split production platforms
execute. :class:`SecureRounds` executes it on the local C++ runtime, standing in for the
platform's secure aggregation with ``federated.secagg`` (see ``secagg_factory`` for why):

1. Python, between the parties: key advertisement and key sharing among the round's clients.
2. One TFF call (``client_phase``): broadcast, every client's ``work``, and on each client
   the masking of its secure-sum inputs with its own seeds (ChaCha20 in TF ops); back at the
   server come only the ordinary aggregates and ``federated_sum`` of the masked vectors.
3. Python: survivors' shares to ``SecAggServer.unmask``, which yields the plain sum.
4. One TFF call: the form's ``update`` with that sum.

Only power-of-two moduli up to 2^32 are supported: the masks live in Z_{2^32}, and a sum mod
2^32 reduces to the right sum mod any power of two that divides it.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Collection, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from federated import secagg
from federated.secagg_factory import SecAggConfig, apply_masks_tf, leaves
from federated.training import Rounds

_SEEDS_TYPE = tff.StructWithPythonType(
    [("keys", tff.TensorType(np.uint32, [None, 8])), ("signs", tff.TensorType(np.int32, [None]))],
    collections.OrderedDict,
)


class SecureRounds(Rounds):
    """Runs ``process``'s rounds with the protocol supplying its ``federated_secure_modular_sum``.

    ``initialize`` and the model weights are the process's own (inherited from ``training.Rounds``,
    whose interface this keeps); ``next`` takes the same state and client data and returns the same
    ``LearningProcessOutput``.
    """

    def __init__(self, process: tff.learning.templates.LearningProcess, config: SecAggConfig):
        super().__init__(process)
        self.config = config
        self._mrf = mrf = tff.backends.mapreduce.get_map_reduce_form_for_computation(process.next)
        for name in ("secure_sum_bitwidth", "secure_sum_max_input"):
            if tf.nest.flatten(getattr(mrf, name)()):
                raise ValueError(f"the process uses {name.replace('_', ' ')}; SecureRounds runs only "
                                 "federated_secure_modular_sum (use secagg_factory.secure_aggregator)")
        self._moduli = [int(m) for m in tf.nest.flatten(mrf.secure_modular_sum_modulus())]
        if not self._moduli:
            raise ValueError("the process has no secure modular sum; build it with secagg_factory.secure_aggregator")
        for m in self._moduli:
            if m & (m - 1) or not 1 < m <= secagg.MODULUS:
                raise ValueError(f"secure modulus {m} is not a power of two up to 2^32; the masks live in Z_2^32")
        self._layout = tff.types.type_to_tf_tensor_specs(mrf.work.type_signature.result[3])
        self._specs = tf.nest.flatten(self._layout)
        self._sizes = [int(np.prod(s.shape)) for s in self._specs]
        self._client_phase = self._build_client_phase()
        self.last_timings: dict[str, float] = {}  # seconds per stage of the last round, for benchmarks

    def _build_client_phase(self):
        mrf, moduli = self._mrf, self._moduli
        modular_type = mrf.work.type_signature.result[3]
        state_type = mrf.prepare.type_signature.parameter
        data_type = mrf.work.type_signature.parameter[0]

        @tff.tensorflow.computation(modular_type, _SEEDS_TYPE)
        def mask(values, seeds):
            # Each leaf reduced mod its own modulus, then all masked together in Z_2^32.
            flat = tf.concat([tf.reshape(tf.math.floormod(tf.cast(x, tf.int64), m), [-1])
                              for x, m in zip(leaves(values), moduli)], axis=0)
            return apply_masks_tf(flat, seeds["keys"], seeds["signs"])

        @tff.federated_computation(tff.FederatedType(state_type, tff.SERVER), tff.FederatedType(data_type, tff.CLIENTS),
                                   tff.FederatedType(_SEEDS_TYPE, tff.CLIENTS))
        def client_phase(state, data, seeds):
            broadcast = tff.federated_broadcast(tff.federated_map(mrf.prepare, state))
            aggregate_in, _, _, modular_in = tff.federated_map(mrf.work, tff.federated_zip([data, broadcast]))
            aggregate = tff.federated_aggregate(aggregate_in, mrf.zero(), mrf.accumulate, mrf.merge, mrf.report)
            masked = tff.federated_map(mask, tff.federated_zip([modular_in, seeds]))
            return aggregate, tff.federated_sum(masked)

        return client_phase

    def next(
        self,
        state,
        client_data: Sequence,
        *,
        names: Sequence[str] | None = None,
        drop_after_sharing: Collection[int] = (),
        drop_during_unmasking: Collection[int] = (),
        entropy: secagg.Entropy = os.urandom,
    ) -> tff.learning.templates.LearningProcessOutput:
        """One round over ``client_data`` (one entry per selected client, named by ``names``).

        ``drop_after_sharing`` / ``drop_during_unmasking`` simulate clients lost after key
        sharing (no masked input) or before unmasking (no shares); beyond ``K - t`` of them the
        round raises ``secagg.SecAggError`` and the state is left as it was.
        """
        t0 = time.perf_counter()
        n = len(client_data)
        if not 2 <= n <= self.config.max_clients:
            raise ValueError(f"secure aggregation needs 2 to max_clients={self.config.max_clients} clients, got {n}")
        t = self.config.threshold(n)
        clients = [secagg.SecAggClient(i, n, t, entropy=entropy) for i in range(n)]
        server = secagg.SecAggServer(n, t, names=names)
        roster = server.collect_keys({c.index: c.advertise_keys() for c in clients})
        mailboxes = server.route_shares({c.index: c.share_keys(roster) for c in clients})
        for c in clients:
            c.receive_shares(mailboxes[c.index])

        present = [i for i in range(n) if i not in set(drop_after_sharing)]
        server.require_quorum(present, range(n), "masked input collection")  # fail before training
        seeds = [collections.OrderedDict(keys=s.keys, signs=s.signs)
                 for s in (clients[i].mask_seeds() for i in present)]
        t1 = time.perf_counter()
        aggregate, masked_sum = self._client_phase(state, [client_data[i] for i in present], seeds)
        t2 = time.perf_counter()
        server.collect_masked_sum(np.mod(np.asarray(masked_sum, np.int64), secagg.MODULUS).astype(np.uint32), present)
        total = server.unmask(clients[u].unmask_shares(present) for u in present if u not in set(drop_during_unmasking))

        t3 = time.perf_counter()
        result = self._mrf.update(state, (aggregate, (), (), self._unflatten(total)))
        self.last_timings = {"key_setup": t1 - t0, "client_phase": t2 - t1, "unmask": t3 - t2,
                             "update": time.perf_counter() - t3}
        # The form drops Python containers; give back the process's own (LearningAlgorithmState, ...).
        return tff.types.type_to_py_container(tff.structure.from_container(result, recursive=True),
                                              self.process.next.type_signature.result)

    def _unflatten(self, total: np.ndarray):
        """The flat Z_2^32 sum as the form's structure of leaves, each reduced mod its modulus."""
        out, start = [], 0
        for spec, size, m in zip(self._specs, self._sizes, self._moduli):
            part = total[start:start + size].astype(np.int64) % m
            out.append(part.reshape(spec.shape).astype(spec.dtype.as_numpy_dtype))
            start += size
        return tf.nest.pack_sequence_as(self._layout, out)
