import XCTest
@testable import TensorCore

/// BLAS threads per rank when nobody set them: each local rank gets its share of the cores it may run
/// on; a thread variable from the user, `launch/run` or SLURM's cpus-per-task decides instead.
final class BLASThreadChoiceTests: XCTestCase {
    func testLocalRanksShareTheAllowedCores() {
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "2"], allowedCores: 2, defaultThreads: 2), 1)
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "4"], allowedCores: 64, defaultThreads: 64), 16)
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["MPI_LOCALNRANKS": "3"], allowedCores: 8, defaultThreads: 8), 2)
        // More ranks than cores (oversubscribed): one thread each, never zero.
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "4"], allowedCores: 2, defaultThreads: 2), 1)
        // A rank bound to one core by the launcher: its mask holds one core.
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "2"], allowedCores: 1, defaultThreads: 2), 1)
    }

    func testThreadVariablesAndSLURMDecide() {
        for v in ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"] {
            XCTAssertNil(BLASThreadChoice.plan(environment: [v: "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"], allowedCores: 2, defaultThreads: 2), v)
        }
        // An empty variable is not a choice.
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["OPENBLAS_NUM_THREADS": "", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"], allowedCores: 2, defaultThreads: 2), 1)
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["SLURM_CPUS_PER_TASK": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"], allowedCores: 8, defaultThreads: 8), 4)
        XCTAssertEqual(BLASThreadChoice.plan(environment: ["SLURM_CPUS_PER_TASK": "4"], allowedCores: 2, defaultThreads: 8), 2)
        // srun without cpus-per-task: the tasks on this node from SLURM's compressed list.
        let srun = ["SLURM_STEP_TASKS_PER_NODE": "4(x2),2", "SLURM_NODEID": "1"]
        XCTAssertEqual(BLASThreadChoice.plan(environment: srun, allowedCores: 8, defaultThreads: 8), 2)
        XCTAssertEqual(BLASThreadChoice.plan(environment: srun.merging(["SLURM_NODEID": "2"]) { $1 }, allowedCores: 8, defaultThreads: 8), 4)
        XCTAssertEqual(BLASThreadChoice.slurmTasks("3", node: 0), 3)
        XCTAssertNil(BLASThreadChoice.slurmTasks("2(x2)", node: 2))
        XCTAssertNil(BLASThreadChoice.slurmTasks("2(y2)", node: 0))
    }

    func testOneProcessKeepsItsCoresButNotMore() {
        XCTAssertNil(BLASThreadChoice.plan(environment: [:], allowedCores: 2, defaultThreads: 2))
        XCTAssertNil(BLASThreadChoice.plan(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "1"], allowedCores: 2, defaultThreads: 2))
        // taskset / a cgroup narrower than the machine.
        XCTAssertEqual(BLASThreadChoice.plan(environment: [:], allowedCores: 4, defaultThreads: 64), 4)
        XCTAssertGreaterThanOrEqual(BLASThreadChoice.allowedCores, 1)
    }
}

extension BLASThreadChoiceTests {
    func testCpusAllowedMaskIsCounted() {
        XCTAssertEqual(BLASThreadChoice.cpusAllowed(status: "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"), 2)
        XCTAssertEqual(BLASThreadChoice.cpusAllowed(status: "Cpus_allowed:\tffffffff,ffffffff,00000001\n"), 65)
        XCTAssertNil(BLASThreadChoice.cpusAllowed(status: "Cpus_allowed:\tzz\n"))
        XCTAssertNil(BLASThreadChoice.cpusAllowed(status: "Name:\tx\n"))
    }
}
