// Exits 0 when the Kafka broker at args[0] answers a metadata request (describeCluster) and lists
// its topics, 1 otherwise. Run by scripts/kafka.sh as a single-file Java program on the broker's
// own classpath: java -cp 'LIBS/*' scripts/kafka/Ready.java HOST:PORT [TIMEOUT_MS [CLIENT_PROPS]]
// CLIENT_PROPS: a properties file of client settings (security.protocol, sasl.*, ssl.*) for a
// secured listener.
import java.io.FileInputStream;
import java.io.IOException;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class Ready {
    public static void main(String[] args) {
        if (args.length < 1) {
            System.err.println("usage: Ready HOST:PORT [TIMEOUT_MS [CLIENT_PROPS]]");
            System.exit(2);
        }
        int timeoutMs = args.length > 1 ? Integer.parseInt(args[1]) : 5000;
        Properties props = new Properties();
        if (args.length > 2) {
            try (FileInputStream in = new FileInputStream(args[2])) {
                props.load(in);
            } catch (IOException e) {
                System.err.println("cannot read " + args[2] + ": " + e);
                System.exit(2);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        try (Admin admin = Admin.create(props)) {
            int brokers = admin.describeCluster().nodes().get(timeoutMs, TimeUnit.MILLISECONDS).size();
            int topics = admin.listTopics().names().get(timeoutMs, TimeUnit.MILLISECONDS).size();
            System.out.println("brokers=" + brokers + " topics=" + topics);
            System.exit(brokers > 0 ? 0 : 1);
        } catch (Exception e) {
            System.err.println("not ready: " + e);
            System.exit(1);
        }
    }
}
