// Applies a security plan to the local broker in one JVM (Java's single-file source launcher):
// SCRAM users and ACLs, as deploy/local/kafka_security.py computes them from the topic
// catalogue. The plan is authoritative for the principals it names: their ACLs that the plan no
// longer holds are deleted.
//
// usage: java -cp 'deploy/kafka/target/kafka-libs/*' deploy/kafka/KafkaSecurity.java \
//            BOOTSTRAP ADMIN_PASSWORD_FILE PLAN_FILE
// plan lines:  user NAME PASSWORD
//              acl PRINCIPAL TOPIC|GROUP|CLUSTER LITERAL|PREFIXED NAME OPERATION
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaSecurity {
    public static void main(String[] args) throws Exception {
        String password = Files.readString(Path.of(args[1])).strip();
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("security.protocol", "SASL_PLAINTEXT");
        props.put("sasl.mechanism", "SCRAM-SHA-512");
        props.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule "
                + "required username=\"admin\" password=\"" + password + "\";");
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        Set<AclBinding> acls = new HashSet<>();
        Set<String> principals = new HashSet<>();
        for (String line : Files.readAllLines(Path.of(args[2]))) {
            String[] f = line.strip().split("\\s+");
            if (f[0].isEmpty() || f[0].startsWith("#")) {
                continue;
            }
            if (f[0].equals("user") && f.length == 3) {
                users.add(new UserScramCredentialUpsertion(
                        f[1], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), f[2]));
            } else if (f[0].equals("acl") && f.length == 6) {
                principals.add(f[1]);
                acls.add(new AclBinding(
                        new ResourcePattern(ResourceType.valueOf(f[2]), f[4],
                                            PatternType.valueOf(f[3])),
                        new AccessControlEntry(f[1], "*", AclOperation.valueOf(f[5]),
                                               AclPermissionType.ALLOW)));
            } else {
                throw new IllegalArgumentException("bad plan line: " + line);
            }
        }
        try (Admin admin = Admin.create(props)) {
            if (!users.isEmpty()) {
                admin.alterUserScramCredentials(users).all().get();
            }
            List<AclBindingFilter> stale = new ArrayList<>();
            for (AclBinding existing : admin.describeAcls(AclBindingFilter.ANY).values().get()) {
                if (principals.contains(existing.entry().principal()) && !acls.contains(existing)) {
                    stale.add(existing.toFilter());
                }
            }
            if (!stale.isEmpty()) {
                admin.deleteAcls(stale).all().get();
            }
            admin.createAcls(new ArrayList<>(acls)).all().get();
            System.out.println(users.size() + " user(s), " + acls.size() + " ACL(s), "
                               + stale.size() + " stale ACL(s) deleted");
        }
    }
}
