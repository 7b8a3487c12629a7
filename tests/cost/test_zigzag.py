"""Cross-check of the PIM cost model against ZigZag's analog in-memory-computing model (PyPI `zigzag-dse`, a
test-only extra): one convolution and one dense layer on matched macros (128 rows x 128 outputs of 8-bit weights
in 1-bit cells, 8-bit inputs over 2-bit DACs: 4 slices, 8-bit ADCs, one conversion per column and slice).

The counts agree: ADC conversions exactly; DAC activations differ by the rows charged (ZigZag drives the rows a
layer maps, dse every row of an activated array: the ratio is rows / fan-in). The energies do not, and need not:
ZigZag's macro is a 28 nm SRAM one (an 8-bit ADC of 0.70 pJ from its capacitance model, a 2-bit DAC of 0.081 pJ,
bitline charge instead of ReRAM cell reads), and its memory hierarchy (SRAM, DRAM weight loading) is not dse's
eDRAM buffer; the test reports the ratios (docs/cost.md gives the measured ones) and checks what must hold.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

zigzag = pytest.importorskip("zigzag")

from cost_graphs import core, ints  # noqa: E402

from dse.cost.energy import network_cost  # noqa: E402
from dse.cost.model import PimCost  # noqa: E402
from dse.cost.resources import layer_resources  # noqa: E402
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights  # noqa: E402
from dse.ir import ops as o  # noqa: E402
from dse.ir.graph import GraphBuilder  # noqa: E402

MATCHED = HardwareSpec(name="matched", crossbar=Crossbar(128, 1024, 1, False), weights=Weights(8), io=IO(8, 8))
COEFFS = PimCost(dac_bits=2)
CONV = {"operator_type": "Conv", "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": ["ix=1*ox+1*fx", "iy=1*oy+1*fy"], "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [1, 16, 8, 12, 12, 3, 3]}
DENSE = {"operator_type": "Gemm", "equation": "O[b][k]+=W[k][c]*I[b][c]", "dimension_relations": [],
         "loop_dims": ["B", "K", "C"], "loop_sizes": [1, 84, 120]}


def zigzag_layers(tmp: Path) -> list:
    """ZigZag's cost model evaluations of CONV and DENSE (its api minus the stages that save and draw)."""
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.exploit_data_locality_stages import (
        ExploitInterLayerDataLocalityStage,
        SearchInterLayerDataLocalityStage,
    )
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
    from zigzag.stages.parser.workload_parser import WorkloadParserStage
    from zigzag.stages.results.reduce_stages import MinimalEnergyStage, SumStage
    from zigzag.stages.workload_iterator import WorkloadStage

    inputs = Path(zigzag.__file__).parent / "inputs"
    accelerator = yaml.safe_load((inputs / "hardware" / "aimc.yaml").read_text())
    accelerator["operational_array"].update(input_precision=[8, 8], bit_serial_precision=2, adc_resolution=8,
                                            sizes=[128, 128])
    precision = {"W": 8, "I": 8, "O": 16, "O_final": 8}
    workload = [{"id": 0, **CONV, "operand_precision": precision, "operand_source": {"I": 0, "W": 0}},
                {"id": 1, **DENSE, "operand_precision": precision, "operand_source": {"I": 0, "W": 1}}]
    (tmp / "accelerator.yaml").write_text(yaml.safe_dump(accelerator))
    (tmp / "workload.yaml").write_text(yaml.safe_dump(workload))
    stages = [WorkloadParserStage, AcceleratorParserStage, SumStage, SearchInterLayerDataLocalityStage, WorkloadStage,
              ExploitInterLayerDataLocalityStage, MinimalEnergyStage, SpatialMappingGeneratorStage, MinimalEnergyStage,
              TemporalMappingGeneratorStage, CostModelStage]
    logging.disable(logging.INFO)
    try:
        main = MainStage(list_of_callables=stages, accelerator=str(tmp / "accelerator.yaml"),
                         workload=str(tmp / "workload.yaml"), mapping=str(inputs / "mapping" / "default_imc.yaml"),
                         dump_folder=str(tmp / "out"), loma_lpf_limit=2, loma_show_progress_bar=False,
                         nb_mappings_generated=1, enable_mix_spatial_mapping_generation=True,
                         access_same_data_considered_as_no_access=True,
                         temporal_mapping_type=TemporalMappingType("uneven"))
        [(_, per_layer)] = main.run()
    finally:
        logging.disable(logging.NOTSET)
    return [cme for cme, _ in per_layer]


def ours() -> list:
    """dse's cost of the same two layers, each alone."""
    out = []
    b = GraphBuilder()
    x = b.add("input", o.Input((8, 14, 14), code_max=255))
    conv = b.build([b.add("conv", core(ints(16, 8, 3, 3), dense=False, out_max=255), x)])
    b = GraphBuilder()
    x = b.add("input", o.Input((120,), code_max=255))
    dense = b.build([b.add("dense", core(ints(84, 120, 1, 1), dense=True, out_max=255), x)])
    for graph in (conv, dense):
        out.append(network_cost(graph, MATCHED, COEFFS, layer_resources(graph, MATCHED)).layers[0])
    return out


def test_a_conv_and_a_dense_layer_against_zigzag(tmp_path: Path) -> None:
    theirs = zigzag_layers(tmp_path)
    mine = ours()
    fan_in = (8 * 3 * 3, 120)
    for cme, layer, rows in zip(theirs, mine, fan_in, strict=True):
        array = cme.operational_array
        conversions = cme.mac_energy_breakdown["adcs"] / array.get_adc_cost()[2]
        dac_rows = cme.mac_energy_breakdown["dacs"] / array.get_dac_cost()[2]
        assert conversions == pytest.approx(layer.energy_pj["adc"] / COEFFS.adc_pj_per_conversion(8))
        assert dac_rows * MATCHED.crossbar.rows / rows == pytest.approx(
            layer.energy_pj["dac"] / COEFFS.dac_pj_per_activation())
        macro = sum(layer.energy_pj[k] for k in ("crossbar", "dac", "adc", "shift_add"))
        ratios = {"macro": macro / cme.mac_energy, "adc": layer.energy_pj["adc"] / cme.mac_energy_breakdown["adcs"],
                  "buffer_vs_memory": layer.energy_pj["buffer"] / cme.mem_energy,
                  "latency_computation": layer.latency_ns / (cme.latency_total0 * cme.tclk),
                  "latency_with_loading": layer.latency_ns / (cme.latency_total2 * cme.tclk)}
        print(f"{layer.name}: dse / ZigZag " + ", ".join(f"{k} {v:.3g}" for k, v in ratios.items()))
        assert ratios["adc"] == pytest.approx(COEFFS.adc_pj_per_conversion(8) / array.get_adc_cost()[2])
        assert np.isfinite(list(ratios.values())).all()
