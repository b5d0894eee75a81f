#!/usr/bin/python3
"""An independent Modbus slave for vane's tests, built on python3-pymodbus.

    pymodbus_slave.py --values FILE [--units 1,2] [--tcp HOST:PORT | --rtu DEVICE --baud N]

FILE is JSON: {"holding": [...], "input": [...], "coil": [...], "discrete": [...],
"typed": [{"table": "holding", "address": 10, "type": "float32", "order": "CDAB",
"value": 3.14}, ...]}: raw values from address 0, then typed values encoded by
pymodbus's own BinaryPayloadBuilder (an encoder independent of vane's
decoder); every unit serves the same values. Units not
listed never answer (as a dead device). Prints "LISTENING HOST:PORT" (TCP) or
"LISTENING DEVICE" (RTU) when ready. On stdin, "counts" prints a JSON object
of read requests served per unit; EOF on stdin ends the slave.
"""
import argparse
import asyncio
import json
import sys

from pymodbus.constants import Endian
from pymodbus.payload import BinaryPayloadBuilder
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server.async_io import ModbusSerialServer, ModbusTcpServer
from pymodbus.transaction import ModbusRtuFramer, ModbusSocketFramer

COUNTS = {}


class CountingSlave(ModbusSlaveContext):
    def __init__(self, unit, **kwargs):
        super().__init__(**kwargs)
        self.unit = unit

    def getValues(self, fc_as_hex, address, count=1):
        COUNTS[str(self.unit)] = COUNTS.get(str(self.unit), 0) + 1
        return super().getValues(fc_as_hex, address, count)


ORDERS = {  # vane's order -> (byteorder within a word, word order)
    "ABCD": (Endian.Big, Endian.Big),
    "CDAB": (Endian.Big, Endian.Little),
    "BADC": (Endian.Little, Endian.Big),
    "DCBA": (Endian.Little, Endian.Little),
}


def encode(t):
    byteorder, wordorder = ORDERS[t.get("order", "ABCD")]
    b = BinaryPayloadBuilder(byteorder=byteorder, wordorder=wordorder)
    kind, value = t["type"], t["value"]
    {
        "int16": b.add_16bit_int, "uint16": b.add_16bit_uint,
        "int32": b.add_32bit_int, "uint32": b.add_32bit_uint,
        "int64": b.add_64bit_int, "uint64": b.add_64bit_uint,
        "float32": b.add_32bit_float, "float64": b.add_64bit_float,
        "string": b.add_string,
    }[kind](value)
    return b.to_registers()


def apply_typed(v):
    for t in v.get("typed", []):
        table = v.setdefault(t["table"], [])
        regs = encode(t)
        end = t["address"] + len(regs)
        table.extend([0] * max(0, end - len(table)))
        table[t["address"]:end] = regs


def block(values):
    return ModbusSequentialDataBlock(0, list(values) + [0] * 8)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--values", required=True)
    ap.add_argument("--units", default="1")
    ap.add_argument("--tcp", default="127.0.0.1:0")
    ap.add_argument("--rtu")
    ap.add_argument("--baud", type=int, default=19200)
    a = ap.parse_args()
    with open(a.values) as f:
        v = json.load(f)
    apply_typed(v)
    slaves = {}
    for u in [int(x) for x in a.units.split(",") if x]:
        slaves[u] = CountingSlave(
            u,
            hr=block(v.get("holding", [])),
            ir=block(v.get("input", [])),
            co=block(v.get("coil", [])),
            di=block(v.get("discrete", [])),
            zero_mode=True,
        )
    context = ModbusServerContext(slaves=slaves, single=False)
    loop = asyncio.get_running_loop()
    if a.rtu:
        server = ModbusSerialServer(context, framer=ModbusRtuFramer, port=a.rtu, baudrate=a.baud,
                                    ignore_missing_slaves=True)
    else:
        host, port = a.tcp.rsplit(":", 1)
        server = ModbusTcpServer(context, framer=ModbusSocketFramer, address=(host, int(port)),
                                 ignore_missing_slaves=True, allow_reuse_address=True)
    if a.rtu:
        await server.start()  # opens the serial device
    task = asyncio.ensure_future(server.serve_forever())
    if a.rtu:
        print(f"LISTENING {a.rtu}", flush=True)
    else:
        await server.serving
        sock = server.server.sockets[0].getsockname()
        print(f"LISTENING {sock[0]}:{sock[1]}", flush=True)

    done = loop.create_future()

    def on_stdin():
        line = sys.stdin.readline()
        if not line:
            if not done.done():
                done.set_result(True)
            return
        if line.strip() == "counts":
            print(json.dumps(COUNTS), flush=True)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await done
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
