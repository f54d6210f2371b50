/// Which tables of a model share one cache and one database table (`fuse_embedding_table`, HPS §4.9).
///
/// With the top-level `fuse_embedding_table: true` and the model's own flag left true, the tables of the model
/// with the same `embedding_vecsize` and the same default value form one *group*: one cache per device, one
/// volatile- and one persistent-database table (tag `hps_et.<model>.fused_embedding<k>`), holding the rows of
/// every table of the group with their keys tagged by table (``FusedKeySpace``), so keys may repeat across
/// the tables. A lookup of several tables of a group (``LookupSession/lookup(tables:keys:counts:into:)``) is
/// one pass through the cache and the databases. A table alone in its group is served as without fusion.
///
/// HPS fuses by vector size only and warns "Inconsistent default embedding values for tables to be fused" when
/// the defaults differ; here that warning names the tables, which then go to separate groups per default value,
/// so every table keeps its own default.
///
/// Without fusion every table is its own group, in table order (group `t` is table `t`).
public struct TableFusion: Sendable, Equatable {
    /// One cache / database table serving one or more tables of the model.
    public struct Group: Sendable, Equatable {
        /// What the group is served as: tag, dimension, default value, keys per sample (the sum over the
        /// members, as HPS sums `maxnum_catfeature_query_per_table_per_sample`); `index` is the group's index.
        public var table: TableConfig
        /// The model's table indices in the group, ascending; member `m` is table `members[m]`.
        public var members: [Int]
        /// The member tables, in member order (for a group of one: that table).
        public var memberTables: [TableConfig]
        /// The tagging of the members' keys; nil for a group of one table (keys as they are).
        public var keySpace: FusedKeySpace?

        public var isFused: Bool { keySpace != nil }
    }

    public let groups: [Group]
    /// The group of each table of the model.
    public let groupOfTable: [Int]
    /// The member index of each table within its group.
    public let memberOfTable: [Int]
    /// The model as its caches see it: one table per group (sizes, limits, names of the groups). Cache
    /// providers get it in ``CacheRequest/model``.
    public let servedModel: ModelConfig

    /// Whether any group holds more than one table.
    public var fusesTables: Bool { groups.contains { $0.isFused } }

    /// The plan for `model` of `config` (fusion when both the top-level and the model's flag ask for it).
    public init(model: ModelConfig, config: ParameterServerConfig) {
        self.init(model: model, fuse: config.fuseEmbeddingTable && model.fuseEmbeddingTable, keyWidth: KeyWidth(supportLongLong: config.supportLongLong))
    }

    public init(model: ModelConfig, fuse: Bool, keyWidth: KeyWidth) {
        let tables = model.tables
        var memberLists: [[Int]] = []
        if fuse {
            var byKey: [FusionKey: Int] = [:]
            for table in tables {
                let key = FusionKey(dimension: table.dimension, defaultBits: table.defaultValue.bitPattern)
                if let g = byKey[key] {
                    memberLists[g].append(table.index)
                } else {
                    byKey[key] = memberLists.count
                    memberLists.append([table.index])
                }
            }
        } else {
            memberLists = tables.map { [$0.index] }
        }
        // Names of fused groups in HPS's order: ascending vector size (then first table), never a table's name.
        let taken = Set(tables.map(\.name))
        var fusedNames: [Int: String] = [:]
        var k = 0
        for g in memberLists.indices.filter({ memberLists[$0].count > 1 }).sorted(by: {
            (tables[memberLists[$0][0]].dimension, memberLists[$0][0]) < (tables[memberLists[$1][0]].dimension, memberLists[$1][0])
        }) {
            var name = "fused_embedding\(k)"
            while taken.contains(name) { name += "_" }
            fusedNames[g] = name
            k += 1
        }
        var groups: [Group] = []
        var groupOfTable = [Int](repeating: 0, count: tables.count)
        var memberOfTable = [Int](repeating: 0, count: tables.count)
        for (g, members) in memberLists.enumerated() {
            let first = tables[members[0]]
            var table = first
            table.index = g
            if members.count > 1 {
                table.name = fusedNames[g]!
                table.path = ""
                table.maxKeysPerSample = members.reduce(0) { sum, t in
                    let (s, overflow) = sum.addingReportingOverflow(tables[t].maxKeysPerSample)
                    return overflow ? .max : s
                }
            }
            for (m, t) in members.enumerated() {
                groupOfTable[t] = g
                memberOfTable[t] = m
            }
            groups.append(Group(table: table, members: members, memberTables: members.map { tables[$0] }, keySpace: members.count > 1 ? FusedKeySpace(memberCount: members.count, keyWidth: keyWidth) : nil))
        }
        self.groups = groups
        self.groupOfTable = groupOfTable
        self.memberOfTable = memberOfTable
        var served = model
        served.sparseFiles = groups.map(\.table.path)
        served.maxKeysPerSample = groups.map(\.table.maxKeysPerSample)
        served.embeddingVectorSizes = groups.map(\.table.dimension)
        served.defaultValues = groups.map(\.table.defaultValue)
        served.tableNames = groups.map(\.table.name)
        servedModel = served
    }

    /// The group serving table `t` of the model.
    public func group(ofTable t: Int) -> Group { groups[groupOfTable[t]] }

    /// Table `t` as its fused group's database table holds it; nil when its group is the table alone
    /// (its rows are then stored under its own tag, keys as they are).
    public func fusedMember(ofTable t: Int) -> FusedTableMember? {
        let group = group(ofTable: t)
        guard let keySpace = group.keySpace else { return nil }
        let member = memberOfTable[t]
        return FusedTableMember(table: group.table, member: member, keySpace: keySpace, memberTable: group.memberTables[member])
    }

    /// HPS's warning for tables of one vector size with different default values, one per such size.
    public static func warnings(model: ModelConfig, path: String) -> [String] {
        var byDimension: [Int: [TableConfig]] = [:]
        for table in model.tables { byDimension[table.dimension, default: []].append(table) }
        return byDimension.keys.sorted().compactMap { dim in
            let tables = byDimension[dim]!
            guard Set(tables.map(\.defaultValue.bitPattern)).count > 1 else { return nil }
            let listed = tables.map { "\($0.name) (\($0.defaultValue))" }.joined(separator: ", ")
            return "\(path): Inconsistent default embedding values for tables to be fused: embedding_vecsize \(dim): \(listed); "
                + "tables with different default values are fused in separate groups, each keeping its own default"
        }
    }

    private struct FusionKey: Hashable {
        var dimension: Int
        var defaultBits: UInt32
    }
}

extension ParameterServerConfig {
    /// The fusion plan of `model` under this configuration.
    public func fusion(of model: ModelConfig) -> TableFusion { TableFusion(model: model, config: self) }
}

/// One table of a fused group as the group's database table holds it: its rows under the group's tag
/// (``table``), its keys tagged with its member index (``FusedKeySpace``). Dumps and loads of the one table
/// (`hps dump`, `hps load-dump`) go through it.
public struct FusedTableMember: Sendable, Equatable {
    /// The group's table: the database table holding the rows (tag, dimension, value size).
    public let table: TableConfig
    /// The table's index within the group.
    public let member: Int
    /// The tagging of the group's keys.
    public let keySpace: FusedKeySpace
    /// The member table itself (its tag names it in messages).
    public let memberTable: TableConfig

    public init(table: TableConfig, member: Int, keySpace: FusedKeySpace, memberTable: TableConfig) {
        precondition(member >= 0 && member < keySpace.memberCount)
        self.table = table
        self.member = member
        self.keySpace = keySpace
        self.memberTable = memberTable
    }

    /// Writes the fused keys of `keys` (normalized keys of this table) to `output` (room for `keys.count`).
    /// - Parameter file: the file the keys come from, named by the error.
    /// - Throws: ``FusedKeySpace/rangeError(key:table:file:)`` (`.invalidTable`, subject `file`) for the first key
    ///   outside the key space.
    public func tag(_ keys: UnsafeBufferPointer<Int64>, file: String, into output: UnsafeMutablePointer<Int64>) throws {
        try keySpace.tag(keys, member: member, table: memberTable, file: file, into: output)
    }

    /// The key of this table that `fused` (a key of the group's database table) stands for; nil when
    /// `fused` belongs to another member of the group.
    @inline(__always)
    public func untag(_ fused: Int64) -> Int64? {
        let (member, key) = keySpace.decode(fused)
        return member == self.member ? key : nil
    }
}
